//! Fixtures: whisper trees written with bucky's whisper code, and an object store wrapper that
//! counts requests and can fail them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bucky_agent::bucket::Bucket;
use bucky_shared::layout::Version;
use bucky_shared::metric;
use bucky_shared::whisper::{self, CreateOptions, Whisper};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// The clock of the fixtures (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;

pub fn at(offset: i64) -> Version {
    Version(NOW + offset)
}

/// Writes `count` metrics `app.<i>.requests` with a day of minute data under `root`.
pub fn write_tree(root: &Path, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let name = format!("app.m{i:03}.requests");
            write_metric(root, &name, i as f64, 0);
            name
        })
        .collect()
}

/// Writes (or rewrites) one metric: 600 minutes of points ending `shift` seconds after NOW.
pub fn write_metric(root: &Path, name: &str, base: f64, shift: i64) {
    let path = metric::path_of(root, name).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = whisper::parse_retentions(&["60s:1d", "15m:30d"]).unwrap();
    let image = whisper::create_image(&schema, &CreateOptions::default()).unwrap();
    let mut file = Whisper::open(image, &path).unwrap();
    let points: Vec<(i64, f64)> = (0..600)
        .map(|i| (NOW + shift - 600 * 60 + i * 60, base + i as f64))
        .collect();
    file.update_many(&points, NOW + shift).unwrap();
    std::fs::write(&path, file.storage().bytes()).unwrap();
}

/// Every file of a tree, name → bytes.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Requests seen by a [`Counting`] store.
#[derive(Debug, Default)]
pub struct Counts {
    pub puts: AtomicUsize,
    pub gets: AtomicUsize,
    pub deletes: AtomicUsize,
    pub lists: AtomicUsize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.puts() + self.gets() + self.deletes() + self.lists()
    }
    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
    pub fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }
}

/// When a [`Counting`] store fails requests.
#[derive(Debug, Clone, Copy)]
pub enum Faults {
    None,
    /// Every request after the first `n` PUTs fails: the process "died" there.
    DieAfterPuts(usize),
    /// Every `n`-th request fails (a flaky network).
    EveryNth(usize),
    /// Every `n`-th request never answers (a stuck connection).
    HangEveryNth(usize),
    /// Every request after the first `n` PUTs never answers (a server frozen mid-run).
    FreezeAfterPuts(usize),
    /// Every request after the first `n` GETs never answers (frozen mid-restore).
    FreezeAfterGets(usize),
}

/// An object store that counts requests and injects [`Faults`].
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    pub counts: Arc<Counts>,
    faults: Faults,
    seen: AtomicUsize,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl Counting {
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        Counting {
            inner,
            counts: Arc::default(),
            faults,
            seen: AtomicUsize::new(0),
        }
    }

    /// Counts a request and applies the faults: an error, or a request that never answers.
    async fn check(&self) -> object_store::Result<()> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        let (fail, hang) = match self.faults {
            Faults::None => (false, false),
            Faults::DieAfterPuts(limit) => (self.counts.puts() > limit, false),
            Faults::EveryNth(k) => (n.is_multiple_of(k), false),
            Faults::HangEveryNth(k) => (false, n.is_multiple_of(k)),
            Faults::FreezeAfterPuts(limit) => (false, self.counts.puts() > limit),
            Faults::FreezeAfterGets(limit) => (false, self.counts.gets() > limit),
        };
        if hang {
            std::future::pending::<()>().await;
        }
        if fail {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "injected fault".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.counts.gets.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        let counts = self.counts.clone();
        let counted = locations.inspect(move |_| {
            counts.deletes.fetch_add(1, Ordering::SeqCst);
        });
        self.inner.delete_stream(counted.boxed())
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        match self.faults {
            Faults::HangEveryNth(k) if n.is_multiple_of(k) => futures::stream::pending().boxed(),
            Faults::EveryNth(k) if n.is_multiple_of(k) => futures::stream::once(async {
                Err(object_store::Error::Generic {
                    store: "test",
                    source: "injected fault".into(),
                })
            })
            .boxed(),
            Faults::DieAfterPuts(limit) if self.counts.puts() > limit => {
                futures::stream::once(async {
                    Err(object_store::Error::Generic {
                        store: "test",
                        source: "injected fault".into(),
                    })
                })
                .boxed()
            }
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// A bucket over `store` under the prefix `graphite/`, counted, with `faults`.
pub fn counted_bucket(store: Arc<dyn ObjectStore>, faults: Faults) -> (Bucket, Arc<Counts>) {
    counted_bucket_at(store, "graphite", faults)
}

/// [`counted_bucket`] under another prefix, for several buckets in one store.
pub fn counted_bucket_at(
    store: Arc<dyn ObjectStore>,
    prefix: &str,
    faults: Faults,
) -> (Bucket, Arc<Counts>) {
    let counting = Counting::new(store, faults);
    let counts = counting.counts.clone();
    (
        Bucket::new(Arc::new(counting), prefix, "test://bucket"),
        counts,
    )
}

/// An S3 server (s3s-fs) on an ephemeral loopback port, serving the bucket `bucky-test` from a
/// temp dir; stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const S3_BUCKET: &str = "bucky-test";

pub async fn spawn_s3() -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(S3_BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        "bucky-test-key",
        "bucky-test-secret",
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(conn);
        }
    });
    S3Server {
        endpoint: format!("http://{addr}"),
        _dir: dir,
        task,
    }
}

/// The test server's bucket, under `prefix`, as `bucky-agent --bucket s3://... --s3-*` opens it.
pub fn s3_bucket(server: &S3Server, prefix: &str) -> Bucket {
    let options = bucky_agent::bucket::StoreOptions {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        path_style: true,
        allow_http: true,
        request_timeout: None,
        extra: vec![
            ("aws_access_key_id".into(), "bucky-test-key".into()),
            ("aws_secret_access_key".into(), "bucky-test-secret".into()),
        ],
    };
    Bucket::open(&format!("s3://{S3_BUCKET}/{prefix}"), &options).unwrap()
}

/// The stores the scenario suite runs against: a `file://` directory and the S3 server.
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Backend {
    /// A local directory store, as `file://` opens it.
    pub fn file() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        Backend {
            store: Arc::new(store),
            _guard: Box::new(dir),
        }
    }

    /// A bucket on a fresh s3s-fs server on loopback, spoken to with object_store's S3 client.
    pub async fn s3() -> Backend {
        let server = spawn_s3().await;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_bucket_name(S3_BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("bucky-test-key")
            .with_secret_access_key("bucky-test-secret")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap();
        Backend {
            store: Arc::new(store),
            _guard: Box::new(server),
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

/// Runs each named `async fn(Backend)` scenario against every store, as `<name>::file` and
/// `<name>::s3`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn file() {
                super::$name($crate::support::Backend::file()).await
            }
            #[tokio::test]
            async fn s3() {
                super::$name($crate::support::Backend::s3().await).await
            }
        }
    )*};
}
