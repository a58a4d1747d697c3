//! OCI image layouts (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) in and out of the
//! cache, as a directory or a tar stream: how content is carried to an air-gapped site.
//!
//! `index.json` entries carry the reference as `org.opencontainers.image.ref.name`
//! (`<upstream>/<repository>:<tag>`, which skopeo and umoci understand) and, so that an
//! import restores every tag exactly, entrepot's own annotations below.

pub mod export;
pub mod import;
pub mod tar;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_UPSTREAM: &str = "io.entrepot.upstream";
pub const ANN_REPOSITORY: &str = "io.entrepot.repository";
pub const ANN_TAG: &str = "io.entrepot.tag";
/// The Accept class the tag was resolved for (a registry may answer classes differently).
pub const ANN_ACCEPT: &str = "io.entrepot.accept";
/// When the exporting site last validated the tag upstream (ms since the epoch).
pub const ANN_VALIDATED: &str = "io.entrepot.validated-at";
pub const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Ends a file written aside as `partial` (so that a failure leaves nothing where the
/// result goes): renamed to `target` when `written` succeeded, removed when it failed.
pub fn settle<T>(partial: &std::path::Path, target: &std::path::Path, written: crate::Result<T>) -> crate::Result<T> {
    match written {
        Ok(v) => {
            std::fs::rename(partial, target)?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
    }
}
