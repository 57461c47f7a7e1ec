//! Bearer-token authentication, used by the agent's and the coordinator's servers: every RPC must carry `authorization: Bearer <token>`; anything
//! else is `Unauthenticated` before a handler runs.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// The token the agent accepts.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Arc<Vec<u8>>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(<redacted>)")
    }
}

impl TokenCheck {
    /// Accepts `token`.
    pub fn new(token: &str) -> Self {
        TokenCheck {
            expected: Arc::new(format!("Bearer {token}").into_bytes()),
        }
    }
}

/// Reads the token file (trailing whitespace ignored).
///
/// # Errors
/// The file cannot be read, or holds no token; the message names the file.
pub fn read_token(path: &Path) -> Result<String, String> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_string())
}

/// Reads a server's token file as [`read_token`] does, after checking who else may touch it:
/// a file others can write is refused (whoever rewrites it controls every backup and restore);
/// a file others can read gives back a warning to log.
///
/// # Errors
/// As [`read_token`], or a file writable by its group or by anyone.
pub fn read_server_token(path: &Path) -> Result<(String, Option<String>), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("reading the token file {}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "the token file {} is writable by others (mode {mode:04o}): whoever changes it can run \
             backups and restores; chmod 600 {0}",
            path.display()
        ));
    }
    let warning = (mode & 0o004 != 0).then(|| {
        format!(
            "the token file {} is readable by every user (mode {mode:04o}); chmod 640 or 600 it",
            path.display()
        )
    });
    Ok((read_token(path)?, warning))
}

/// Equal in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get("authorization") {
            Some(value) if constant_time_eq(value.as_bytes(), &self.expected) => Ok(request),
            presented => {
                tracing::warn!(
                    peer = ?request.remote_addr(),
                    token = if presented.is_some() { "wrong" } else { "missing" },
                    "request refused: missing or wrong bearer token"
                );
                Err(Status::unauthenticated("missing or wrong bearer token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let mut check = TokenCheck::new("s3cret");
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(v) = value {
                request
                    .metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            request
        };
        assert!(check.call(with(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            assert_eq!(
                check.call(with(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
        assert_eq!(format!("{check:?}"), "TokenCheck(<redacted>)");
    }
}
