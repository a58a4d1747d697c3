//! Wiring: a validated config becomes a store, an upstream table and a cache.

use std::sync::Arc;

use crate::cache::{Cache, Settings};
use crate::config::Config;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::upstream::Upstreams;

pub struct App {
    pub config: Config,
    pub upstreams: Upstreams,
    pub cache: Arc<Cache>,
}

impl App {
    pub fn build(config: Config) -> Result<Arc<App>> {
        let (store, found) = Store::open(&config.data_dir)?;
        let metrics = Arc::new(Metrics::default());
        let upstreams = Upstreams::build(&config, metrics.clone())?;
        let cache = Arc::new(Cache::new(store, found.bytes, Settings::from_config(&config), metrics));
        Ok(Arc::new(App {
            config,
            upstreams,
            cache,
        }))
    }
}
