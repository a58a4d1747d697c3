//! Policies: what may enter the cache (`filter`, with `cosign` for the signatures a rule
//! requires) and how long it stays (`retention`; `tier` for the shared tier).
//! Pure functions over facts the cache gathers; the cache acts on their answers.

pub mod cosign;
pub mod filter;
pub mod glob;
pub mod retention;
pub mod tier;
