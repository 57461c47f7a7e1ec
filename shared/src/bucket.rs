//! A node's bucket: an object store plus the layout under its prefix. Opened from a URL
//! (`file:///path`, `memory://`, `s3://bucket/prefix`, `gs://…`, `az://…`); credentials come from
//! the environment as object_store reads them and are never logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::layout::Layout;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// A bucket operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL or its options do not describe a store.
    #[error("bucket {url}: {reason}")]
    Open {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store did not answer in time.
    #[error("bucket {bucket}: {action} {key}: no answer within {after:?}")]
    Timeout {
        /// The bucket's URL.
        bucket: String,
        /// What was being done.
        action: &'static str,
        /// The object.
        key: String,
        /// The deadline.
        after: Duration,
    },
    /// The store refused or failed a request.
    #[error("bucket {bucket}: {action} {key}: {cause}")]
    Request {
        /// The bucket's URL.
        bucket: String,
        /// What was being done.
        action: &'static str,
        /// The object.
        key: String,
        /// The store's error and its causes, each said once (see [`cause_text`]).
        cause: String,
    },
}

/// Options for S3-compatible stores (Ceph RGW, Swift's S3 API, MinIO); the `[storage]` section
/// of the agent's and the coordinator's config files.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region; S3-compatible stores usually accept any.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible stores need;
    /// default false.
    #[serde(default)]
    pub path_style: bool,
    /// Allow plain HTTP endpoints; default false.
    #[serde(default)]
    pub allow_http: bool,
    /// Seconds one request may take before it counts as failed; default 60
    /// ([`DEFAULT_REQUEST_TIMEOUT`]).
    #[serde(default)]
    pub request_timeout: Option<u64>,
    /// Further object_store settings (`aws_access_key_id`, `google_service_account`, ...),
    /// applied after the environment's. Never logged; not read from config files (credentials
    /// belong in the environment).
    #[serde(skip)]
    pub extra: Vec<(String, String)>,
}

/// Settings (object_store's names, lower case) any one of which gives an S3 store credentials
/// or says it needs none.
const CREDENTIAL_KEYS: [&str; 5] = [
    "aws_access_key_id",
    "aws_web_identity_token_file",
    "aws_container_credentials_relative_uri",
    "aws_container_credentials_full_uri",
    "aws_skip_signature",
];

/// How long one request may take before it counts as failed: a stuck store never hangs a run.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One host's bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    url: String,
    timeout: Duration,
    /// The directory of a `file://` bucket, listed by [`list_local`]: object_store's own local
    /// listing ends at the first file name that is not a valid object path.
    local_dir: Option<std::path::PathBuf>,
    /// Requests sent through this bucket (and its clones): one per object read, written or
    /// deleted, one per listing.
    requests: Arc<std::sync::atomic::AtomicU64>,
    /// Requests in a row (through this bucket and its clones) that got no answer in time; any
    /// answer, even an error, sets it back to 0.
    unanswered: Arc<std::sync::atomic::AtomicU32>,
}

/// Requests in a row without an answer after which the store counts as stalled
/// ([`Bucket::stalled`]): a frozen server costs a run a few timeouts, not hours of them.
pub const STALL_LIMIT: u32 = 5;

impl Bucket {
    /// Wraps an existing store (tests, in-process servers); `url` names it in errors.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Bucket {
            store,
            layout: Layout::new(prefix),
            url: url.to_string(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
            local_dir: None,
            requests: Arc::default(),
            unanswered: Arc::default(),
        }
    }

    /// Requests sent so far through this bucket and its clones.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, n: u64) {
        self.requests
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// The same bucket with another per-request deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs one request under the deadline.
    async fn bounded<T>(
        &self,
        action: &'static str,
        key: &str,
        request: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        match tokio::time::timeout(self.timeout, request).await {
            Ok(answer) => {
                self.unanswered.store(0, Relaxed);
                answer
            }
            Err(_) => {
                self.unanswered.fetch_add(1, Relaxed);
                Err(Error::Timeout {
                    bucket: self.url.clone(),
                    action,
                    key: key.to_string(),
                    after: self.timeout,
                })
            }
        }
    }

    /// How many requests in a row got no answer, once that is [`STALL_LIMIT`] or more: the
    /// store is not answering, and a run should stop rather than wait out every request.
    pub fn stalled(&self) -> Option<u32> {
        let unanswered = self.unanswered.load(std::sync::atomic::Ordering::Relaxed);
        (unanswered >= STALL_LIMIT).then_some(unanswered)
    }

    /// Why a request is not worth sending now, when the bucket is [`Bucket::stalled`]: a job of
    /// many objects fails the rest fast instead of waiting out each request's deadline.
    pub fn not_answering(&self) -> Option<String> {
        self.stalled().map(|unanswered| {
            format!(
                "bucket {}: not tried: the store is not answering ({unanswered} requests in a row \
                 got no answer within {:?}); run again when it answers",
                self.url(),
                self.timeout
            )
        })
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens the bucket at `url`. A `file://` directory is created if missing.
    ///
    /// # Errors
    /// [`Error::Open`] naming the URL.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Bucket, Error> {
        let bucket = Self::open_store(url, options)?;
        Ok(match options.request_timeout {
            Some(0) => {
                return Err(Error::Open {
                    url: url.to_string(),
                    reason: "request_timeout must be at least 1 second".into(),
                });
            }
            Some(seconds) => bucket.with_timeout(Duration::from_secs(seconds)),
            None => bucket,
        })
    }

    fn open_store(url: &str, options: &StoreOptions) -> Result<Bucket, Error> {
        let open_err = |reason: String| Error::Open {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| open_err(e.to_string()))?;
        if parsed.scheme() == "file" {
            // The url crate reads `file:relative/dir` as `/relative/dir`: refuse anything that
            // does not spell its absolute path out.
            if !(url.starts_with("file:///") || url.starts_with("file://localhost/")) {
                return Err(open_err(
                    "a file: URL must be absolute, file:///path/to/dir (a relative one would be read from /)".into(),
                ));
            }
            let dir = parsed
                .to_file_path()
                .map_err(|()| open_err("not an absolute local path".into()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| open_err(format!("creating {}: {e}", dir.display())))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| open_err(e.to_string()))?;
            return Ok(Bucket {
                local_dir: Some(dir),
                ..Bucket::new(Arc::new(store), "", url)
            });
        }
        // Credentials and settings from the environment, as object_store names them
        // (AWS_ACCESS_KEY_ID, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_NAME, ...).
        let mut opts: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if let Some(endpoint) = &options.endpoint {
            opts.push(("aws_endpoint".into(), endpoint.clone()));
        }
        if let Some(region) = &options.region {
            opts.push(("aws_region".into(), region.clone()));
        }
        if options.path_style {
            opts.push(("aws_virtual_hosted_style_request".into(), "false".into()));
        }
        if options.allow_http {
            opts.push(("allow_http".into(), "true".into()));
        }
        opts.extend(options.extra.iter().cloned());
        // object_store refuses a plain-http endpoint on every request with "URL scheme is not
        // allowed", which reaches the operator as an unreadable bucket; say it once, here.
        let http_allowed = opts
            .iter()
            .any(|(k, v)| matches!(k.as_str(), "allow_http" | "aws_allow_http") && v == "true");
        if let Some(endpoint) = &options.endpoint
            && endpoint.to_ascii_lowercase().starts_with("http://")
            && !http_allowed
        {
            return Err(open_err(format!(
                "endpoint {endpoint} is plain http, which is refused unless allowed: set \
                 allow_http = true under [storage] (or pass --s3-allow-http), or use https://"
            )));
        }
        if matches!(parsed.scheme(), "s3" | "s3a") && options.endpoint.is_some() {
            let found = |key: &str| opts.iter().any(|(k, _)| k == key);
            // Without credentials object_store asks the EC2 instance metadata service, and the
            // operator of a Ceph or MinIO store reads a 403 from 169.254.169.254.
            if !CREDENTIAL_KEYS.iter().any(|key| found(key)) {
                return Err(open_err(
                    "no credentials for the S3-compatible endpoint: looked for \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and \
                     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI in the environment (the \
                     systemd units read /etc/bucky/agent.env and /etc/bucky/coordinator.env) \
                     and found none; set AWS_SKIP_SIGNATURE=true for a public bucket"
                        .into(),
                ));
            }
        }
        let (store, path) =
            object_store::parse_url_opts(&parsed, opts).map_err(|e| open_err(e.to_string()))?;
        Ok(Bucket::new(Arc::from(store), path.as_ref(), url))
    }

    /// The layout of keys in this bucket.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> StorePath {
        StorePath::parse(key).unwrap_or_else(|_| StorePath::from(key))
    }

    fn request_err(
        &self,
        action: &'static str,
        key: &str,
    ) -> impl FnOnce(object_store::Error) -> Error {
        let (bucket, key) = (self.url.clone(), key.to_string());
        move |source| {
            let cause = cause_text(&source);
            let cause = match is_missing_bucket(&cause) {
                true => "the bucket does not exist on the server (NoSuchBucket): create it, or \
                         correct the bucket URL"
                    .to_string(),
                false => cause,
            };
            Error::Request {
                bucket,
                action,
                key,
                cause,
            }
        }
    }

    /// The object at `key`, or `None` if there is none.
    ///
    /// # Errors
    /// Any failure other than "not found".
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.bounded("reading", key, async {
            self.count(1);
            let fetched = async { self.store.get(&self.path(key)).await?.bytes().await };
            match fetched.await {
                Ok(bytes) => Ok(Some(bytes)),
                // S3 answers 404 for a missing bucket too: that is no missing object.
                Err(e @ object_store::Error::NotFound { .. })
                    if !is_missing_bucket(&cause_text(&e)) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.request_err("reading", key)(e)),
            }
        })
        .await
    }

    /// Writes `bytes` at `key` (a whole object: no reader ever sees part of it).
    ///
    /// # Errors
    /// The store failed the request.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.put_bytes(key, Bytes::from(bytes)).await
    }

    /// [`Bucket::put`] of bytes the caller keeps using (no copy is made).
    ///
    /// # Errors
    /// The store failed the request.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), Error> {
        self.bounded("writing", key, async {
            self.count(1);
            self.store
                .put(&self.path(key), PutPayload::from(bytes))
                .await
                .map(drop)
                .map_err(self.request_err("writing", key))
        })
        .await
    }

    /// Writes `bytes` at `key` only if no object is there: `false` when one is. On a store
    /// without conditional writes this is a read then a write, which two writers can race.
    ///
    /// # Errors
    /// The store failed the request.
    pub async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<bool, Error> {
        let payload = PutPayload::from(bytes.clone());
        let create = self.bounded("creating", key, async {
            let options = PutOptions::from(PutMode::Create);
            self.count(1);
            match self.store.put_opts(&self.path(key), payload, options).await {
                Ok(_) => Ok(Some(true)),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Ok(Some(false)),
                Err(object_store::Error::NotImplemented { .. }) => Ok(None),
                Err(e) => Err(self.request_err("creating", key)(e)),
            }
        });
        match create.await? {
            Some(created) => Ok(created),
            None if self.get(key).await?.is_some() => Ok(false),
            None => self.put(key, bytes).await.map(|()| true),
        }
    }

    /// Deletes `key`; an object already gone is not an error.
    ///
    /// # Errors
    /// The store failed the request.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.bounded("deleting", key, async {
            self.count(1);
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.request_err("deleting", key)(e)),
            }
        })
        .await
    }

    /// Deletes `keys` in bulk (the store's batch delete where it has one), each answer under the
    /// deadline; objects already gone count as deleted. Returns how many were deleted and the
    /// failures, which a later run retries.
    ///
    /// # Errors
    /// The store stopped answering within the deadline.
    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(u64, Vec<Error>), Error> {
        if keys.is_empty() {
            return Ok((0, Vec::new()));
        }
        let paths: Vec<object_store::Result<StorePath>> =
            keys.iter().map(|k| Ok(self.path(k))).collect();
        self.count(keys.len() as u64);
        let mut answers = self
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        let (mut deleted, mut failed) = (0, Vec::new());
        loop {
            let next = tokio::time::timeout(self.timeout, answers.next())
                .await
                .map_err(|_| Error::Timeout {
                    bucket: self.url.clone(),
                    action: "deleting",
                    key: format!("{} objects", keys.len()),
                    after: self.timeout,
                })?;
            match next {
                None => return Ok((deleted, failed)),
                Some(Ok(_)) | Some(Err(object_store::Error::NotFound { .. })) => deleted += 1,
                Some(Err(e)) => failed.push(self.request_err("deleting", "")(e)),
            }
        }
    }

    /// Every object under `prefix` (a key prefix ending in `/`, or empty for the bucket),
    /// read as a stream with the deadline applying to each item (so to each page the store
    /// sends), not to the whole listing: a large bucket takes as long as it takes, a stuck one
    /// fails within one deadline. A key the store holds that is not a valid object path (a tab
    /// or newline in a directory name of a `file://` bucket) is reported in
    /// [`Listing::unreadable`], not fatal.
    ///
    /// # Errors
    /// The store failed the listing or did not answer within the deadline.
    pub async fn list(&self, prefix: &str) -> Result<Listing, Error> {
        self.count(1);
        if let Some(dir) = &self.local_dir {
            let (dir, owned) = (dir.clone(), prefix.to_string());
            return tokio::task::spawn_blocking(move || list_local(&dir, &owned))
                .await
                .expect("a directory walk does not panic")
                .map_err(|e| {
                    self.request_err("listing", prefix)(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })
                });
        }
        let path = (!prefix.is_empty()).then(|| self.path(prefix.trim_end_matches('/')));
        let mut stream = self.store.list(path.as_ref());
        let mut listing = Listing::default();
        loop {
            let next = tokio::time::timeout(self.timeout, stream.next())
                .await
                .map_err(|_| Error::Timeout {
                    bucket: self.url.clone(),
                    action: "listing",
                    key: prefix.to_string(),
                    after: self.timeout,
                })?;
            match next {
                None => return Ok(listing),
                Some(Ok(meta)) => listing.objects.push(meta),
                Some(Err(object_store::Error::InvalidPath { source })) => {
                    listing.unreadable.push(source.to_string());
                }
                Some(Err(e)) => return Err(self.request_err("listing", prefix)(e)),
            }
        }
    }
}

/// Lists a `file://` bucket's directory as object_store would, except that a file whose name is
/// not a valid object path is reported instead of ending the listing. Files object_store is
/// still writing (`name#123`) are not objects yet.
fn list_local(dir: &std::path::Path, prefix: &str) -> std::io::Result<Listing> {
    let mut listing = Listing::default();
    let start = dir.join(prefix.trim_end_matches('/'));
    if !start.is_dir() {
        return Ok(listing);
    }
    let mut dirs = vec![start];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .expect("walked below the bucket directory");
            let Some(key) = relative.to_str() else {
                listing
                    .unreadable
                    .push(format!("{}: not UTF-8", relative.display()));
                continue;
            };
            if key
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                listing.partial_uploads.push(path);
                continue;
            }
            match StorePath::parse(key) {
                Ok(location) => {
                    let meta = entry.metadata()?;
                    listing.objects.push(ObjectMeta {
                        location,
                        last_modified: meta.modified()?.into(),
                        size: meta.len(),
                        e_tag: None,
                        version: None,
                    });
                }
                Err(e) => listing.unreadable.push(format!("{key:?}: {e}")),
            }
        }
    }
    listing.objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(listing)
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The objects.
    pub objects: Vec<ObjectMeta>,
    /// Keys the store holds that are not valid object paths, each with the reason.
    pub unreadable: Vec<String>,
    /// `file://` buckets: object_store's temp files (`name#123`) of uploads in flight, or of a
    /// process killed while uploading.
    pub partial_uploads: Vec<std::path::PathBuf>,
}

/// Whether a store's error says the bucket itself is missing (S3's `NoSuchBucket`).
fn is_missing_bucket(cause: &str) -> bool {
    cause.contains("NoSuchBucket")
}

/// `error` and its sources joined by ": ", leaving out a source whose text the message before
/// it already holds: object_store's messages embed their sources, and printing the chain as well
/// repeated one cause up to five times on a line.
pub fn cause_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = compact_xml(&error.to_string());
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = compact_xml(&cause.to_string());
        if !last.contains(&said) && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        source = cause.source();
    }
    text
}

/// `text` with each S3 error document (`<Error><Code>..</Code><Message>..</Message>...</Error>`,
/// 500 bytes of XML with request ids) cut to `Code: Message`, and said once: object_store puts
/// the body into its message, and a missing bucket printed it three times.
fn compact_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut said: Vec<String> = Vec::new();
    while let Some(start) = [rest.find("<?xml"), rest.find("<Error>")]
        .into_iter()
        .flatten()
        .min()
    {
        let Some(end) = rest[start..]
            .find("</Error>")
            .map(|e| start + e + "</Error>".len())
        else {
            break;
        };
        out.push_str(&rest[..start]);
        let doc = &rest[start..end];
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let from = doc.find(&open)? + open.len();
            let to = doc[from..].find(&format!("</{tag}>"))? + from;
            Some(doc[from..to].trim().to_string())
        };
        let short = match (field("Code"), field("Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => "an S3 error document".to_string(),
        };
        if said.contains(&short) {
            out.push_str("the same");
        } else {
            out.push_str(&short);
            said.push(short);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_cut_to_their_code_and_message_once() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>graphite-backup-graphite-02</BucketName><RequestId>abc</RequestId></Error>";
        let text = format!("Client error with status 404 Not Found: {xml} (body: {xml})");
        let short = compact_xml(&text);
        assert_eq!(
            short,
            "Client error with status 404 Not Found: NoSuchBucket: The specified bucket does not exist (body: the same)"
        );
        assert_eq!(compact_xml("no xml here"), "no xml here");
        assert_eq!(compact_xml("cut <Error><Code>X"), "cut <Error><Code>X");
    }

    #[test]
    fn a_relative_file_url_is_refused() {
        for url in ["file:relative/dir", "file:/x", "file://host/dir"] {
            let err = Bucket::open(url, &StoreOptions::default()).unwrap_err();
            assert!(err.to_string().contains("must be absolute"), "{url}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("b").display());
        assert!(Bucket::open(&url, &StoreOptions::default()).is_ok());
    }

    #[test]
    fn the_request_timeout_comes_from_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let default = Bucket::open(&url, &StoreOptions::default()).unwrap();
        assert_eq!(default.timeout(), DEFAULT_REQUEST_TIMEOUT);
        let options = StoreOptions {
            request_timeout: Some(5),
            ..StoreOptions::default()
        };
        assert_eq!(
            Bucket::open(&url, &options).unwrap().timeout(),
            Duration::from_secs(5)
        );
        let zero = StoreOptions {
            request_timeout: Some(0),
            ..StoreOptions::default()
        };
        let err = Bucket::open(&url, &zero).unwrap_err().to_string();
        assert!(err.contains("request_timeout"), "{err}");
    }

    #[test]
    fn a_plain_http_endpoint_needs_allow_http() {
        let mut options = StoreOptions {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("default".into()),
            path_style: true,
            ..StoreOptions::default()
        };
        let err = Bucket::open("s3://graphite-backup", &options).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("allow_http = true") && text.contains("--s3-allow-http"),
            "{text}"
        );
        options.allow_http = true;
        options.extra = vec![
            ("aws_access_key_id".into(), "key".into()),
            ("aws_secret_access_key".into(), "secret".into()),
        ];
        Bucket::open("s3://graphite-backup", &options).unwrap();
        options.allow_http = false;
        options.endpoint = Some("https://127.0.0.1:9000".into());
        Bucket::open("s3://graphite-backup", &options).unwrap();
    }

    #[test]
    fn an_s3_compatible_endpoint_without_credentials_says_where_it_looked() {
        let mut options = StoreOptions {
            endpoint: Some("https://rgw.example.internal".into()),
            path_style: true,
            ..StoreOptions::default()
        };
        // The check reads the environment too: a test run with credentials there has nothing
        // to refuse.
        if std::env::vars().any(|(k, _)| CREDENTIAL_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        {
            return;
        }
        let text = Bucket::open("s3://graphite-backup", &options)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("no credentials") && text.contains("AWS_ACCESS_KEY_ID"),
            "{text}"
        );
        assert!(!text.contains("169.254"), "{text}");
        options.extra = vec![("aws_skip_signature".into(), "true".into())];
        Bucket::open("s3://graphite-backup", &options).unwrap();
    }

    #[test]
    fn a_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection refused")]
        struct Refused;
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request: {0}")]
        struct Sending(#[source] Refused);
        #[derive(Debug, thiserror::Error)]
        #[error("Generic S3 error: {0}")]
        struct Generic(#[source] Sending);
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Terse(#[source] Refused);

        let nested = Generic(Sending(Refused));
        assert_eq!(
            cause_text(&nested),
            "Generic S3 error: error sending request: connection refused"
        );
        assert_eq!(
            cause_text(&Terse(Refused)),
            "request failed: connection refused"
        );
    }
}
