//! Wiring: a validated config becomes a store, an upstream table, a cache and the access
//! rules for clients.

use std::sync::Arc;

use crate::access::Access;
use crate::cache::{Cache, Settings};
use crate::config::Config;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::server::tls::Tls;
use crate::store::Store;
use crate::upstream::Upstreams;

pub struct App {
    pub config: Config,
    pub access: Access,
    pub upstreams: Upstreams,
    pub cache: Arc<Cache>,
    /// The listener's TLS, when configured.
    pub tls: Option<Tls>,
}

impl App {
    pub fn build(config: Config) -> Result<Arc<App>> {
        let (store, found) = Store::open(&config.data_dir)?;
        let metrics = Arc::new(Metrics::default());
        let upstreams = Upstreams::build(&config, metrics.clone())?;
        let cache = Arc::new(Cache::new(store, found.bytes, Settings::from_config(&config), metrics));
        let access = Access::new(config.auth.clone());
        let tls = config.tls.as_ref().map(Tls::load).transpose()?;
        Ok(Arc::new(App {
            config,
            access,
            upstreams,
            cache,
            tls,
        }))
    }
}
