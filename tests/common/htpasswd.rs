//! htpasswd files for tests of `[auth]`.

use std::path::Path;

/// An htpasswd file at `path` with these users (bcrypt, cost 4: tests need no more).
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let lines: String = (users.iter())
        .map(|(u, pw)| format!("{u}:{}\n", bcrypt::hash(pw, 4).unwrap()))
        .collect();
    std::fs::write(path, lines).unwrap();
}
