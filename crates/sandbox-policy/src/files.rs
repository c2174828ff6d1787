//! Reading the files the sandbox takes in (policies, catalog entries, SQL,
//! WebAssembly modules) within a size limit: only regular files (a symlink
//! is followed, a loop is named as one), never more than the limit plus one
//! byte read, so `/dev/zero`, a FIFO or a 10 GiB file fail at once with a
//! clear error instead of reading until memory runs out.

use std::io::Read;
use std::path::Path;

/// The largest policy or catalog file read.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Why a file was not read. The message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct ReadError {
    pub path: String,
    pub why: String,
}

fn error(path: &Path, why: impl Into<String>) -> ReadError {
    ReadError {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// The contents of the regular file at `path`, at most `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        // ELOOP: the kernel's "too many levels of symbolic links".
        if e.raw_os_error() == Some(40) {
            error(path, "a symbolic link loop")
        } else {
            error(path, format!("cannot read: {e}"))
        }
    })?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(error(path, format!("not a regular file ({kind})")));
    }
    if meta.len() > max {
        return Err(error(path, format!("{} bytes; at most {max} are read", meta.len())));
    }
    let file = std::fs::File::open(path).map_err(|e| error(path, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(error(path, format!("more than {max} bytes; at most {max} are read")));
    }
    Ok(bytes)
}

/// [`read_bytes`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    String::from_utf8(read_bytes(path, max)?).map_err(|e| {
        error(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "a = 1").expect("write");
        assert_eq!(read_text(&ok, 100).expect("read"), "a = 1");
        assert!(read_text(&ok, 3).expect_err("big").to_string().contains("at most 3"));
        let zero = read_bytes(Path::new("/dev/zero"), 1024).expect_err("device");
        assert!(zero.to_string().contains("not a regular file"), "{zero}");
        assert!(
            read_bytes(dir.path(), 10)
                .expect_err("dir")
                .to_string()
                .contains("a directory")
        );
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::os::unix::fs::symlink(&b, &a).expect("link");
        std::os::unix::fs::symlink(&a, &b).expect("link");
        let looped = read_bytes(&a, 10).expect_err("loop");
        assert!(looped.to_string().contains("symbolic link loop"), "{looped}");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&ok, &link).expect("link");
        assert_eq!(read_text(&link, 100).expect("a link to a file is read"), "a = 1");
        std::fs::write(&ok, [0xff, 0xfe]).expect("write");
        assert!(
            read_text(&ok, 100)
                .expect_err("not utf-8")
                .to_string()
                .contains("UTF-8")
        );
    }
}
