//! The module's pure core, compiled on its own for the fuzz targets (no redis_module).
#![allow(dead_code)]

#[path = "../../src/core/mod.rs"]
pub mod core;
#[path = "../../src/error.rs"]
pub mod error;

/// Splits a fuzz input into arguments at NUL bytes (so seeds are easy to write by hand:
/// `printf 'CACHE.SET\0k\0v\0TAGS\0001\0t'`).
pub fn split_args(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0).collect()
}
