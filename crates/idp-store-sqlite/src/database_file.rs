//! Where the database lives: creating its directory and file, privately.

use std::path::{Component, Path};

use idp_domain::StoreError;

/// Creates the parent directory of `path` and the (empty) database file if
/// they are missing, and answers the name SQLite opens.
///
/// On Unix both are created readable by their owner only (`0700` and `0600`):
/// the file holds the signing keys and the secret hashes. SQLite gives its
/// `-wal` and `-shm` files the database file's permissions. An existing
/// directory or file keeps the permissions it has. Blocking.
pub(crate) fn prepare(path: &Path) -> Result<String, StoreError> {
    let unopenable = |what: &str, e: std::io::Error| {
        StoreError::Unavailable(anyhow::anyhow!(
            "cannot create the database {what} for {}: {e}",
            path.display()
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir_builder()
            .create(parent)
            .map_err(|e| unopenable("directory", e))?;
    }
    private_file_options()
        .open(path)
        .map_err(|e| unopenable("file", e))?;
    sqlite_name(path)
}

/// Creates a directory and its missing parents, private to the user on Unix
/// (`0700`); an existing directory keeps its permissions.
#[cfg(unix)]
pub(crate) fn private_dir_builder() -> std::fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
}

/// Creates a directory and its missing parents.
#[cfg(not(unix))]
pub(crate) fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    builder
}

fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    // `append` opens for writing without truncating an existing file.
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// The name to hand SQLite for `path`. A relative path gets a leading `./`,
/// so a file named like `file:x`, `sqlite://x` or `:memory:` is still that file.
fn sqlite_name(path: &Path) -> Result<String, StoreError> {
    let text = path.to_str().ok_or_else(|| {
        StoreError::Unknown(anyhow::anyhow!(
            "the database path {} is not valid UTF-8",
            path.display()
        ))
    })?;
    let explicit = path.is_absolute()
        || matches!(
            path.components().next(),
            Some(Component::CurDir | Component::ParentDir)
        );
    Ok(if explicit {
        text.to_owned()
    } else {
        format!("./{text}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_cannot_be_read_as_uris() {
        assert_eq!(
            sqlite_name(Path::new("/var/lib/idp/agentidp.db")).unwrap(),
            "/var/lib/idp/agentidp.db"
        );
        assert_eq!(
            sqlite_name(Path::new("data/agentidp.db")).unwrap(),
            "./data/agentidp.db"
        );
        assert_eq!(sqlite_name(Path::new("file:x")).unwrap(), "./file:x");
        assert_eq!(sqlite_name(Path::new(":memory:")).unwrap(), "./:memory:");
        assert_eq!(sqlite_name(Path::new("../x.db")).unwrap(), "../x.db");
        assert_eq!(sqlite_name(Path::new("./x.db")).unwrap(), "./x.db");
    }
}
