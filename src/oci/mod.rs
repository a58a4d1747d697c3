//! OCI vocabulary: digests, names, media types and manifest reading. No HTTP, no storage.

pub mod digest;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::Digest;
