//! The incarnation id of a storage node's data directory: a random 128-bit id, in hex, made when
//! the directory is first used and kept in its `incarnation` file. A node restarted on the same
//! directory answers the same id; one restarted on a wiped directory answers a new one, which
//! tells coordinators that its data is gone and its ranges must be streamed to it again.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
};

/// The file in the data directory that holds the id.
pub const INCARNATION_FILE: &str = "incarnation";

/// Hex digits of an id: 128 bits.
const ID_HEX_LEN: usize = 32;

/// Reads the incarnation id of `data_dir` (which must exist), or, when it has none yet, makes
/// one and stores it durably: written to a temporary file, `fsync`ed, renamed into place and the
/// directory `fsync`ed, so a crash leaves either no file (a new id next start) or a whole one.
/// A file that holds anything but 32 hex digits is an error: better to refuse to start than to
/// answer an id that matches nothing.
pub fn load_or_create(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(INCARNATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.len() == ID_HEX_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(id.to_ascii_lowercase())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a 128-bit hex id", path.display()),
                ))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = format!("{:032x}", rand::random::<u128>());
            let tmp = data_dir.join(format!("{INCARNATION_FILE}.tmp"));
            {
                let mut file = File::create(&tmp)?;
                file.write_all(format!("{id}\n").as_bytes())?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            File::open(data_dir)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path()).unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(load_or_create(dir.path()).unwrap(), id);
        assert!(!dir.path().join("incarnation.tmp").exists());
        assert_eq!(std::fs::read_to_string(dir.path().join(INCARNATION_FILE)).unwrap().trim(), id);
    }

    #[test]
    fn a_wiped_directory_gets_a_new_id() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_ne!(load_or_create(a.path()).unwrap(), load_or_create(b.path()).unwrap());
        let first = load_or_create(a.path()).unwrap();
        std::fs::remove_file(a.path().join(INCARNATION_FILE)).unwrap();
        assert_ne!(load_or_create(a.path()).unwrap(), first);
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INCARNATION_FILE), "not-an-id\n").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
