//! Wiring: a validated config becomes a store, an upstream table, a cache and the access
//! rules for clients.

use std::sync::Arc;

use crate::access::Access;
use crate::cache::{Cache, Settings};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::{BlobStore, Store};
use crate::tls::Tls;
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
    /// What `serve` starts from: the store is open but not yet reconciled; the server
    /// reconciles it in the background once it accepts.
    pub fn open(config: Config) -> Result<Arc<App>> {
        App::open_with_clock(config, Arc::new(SystemClock))
    }

    /// `open`, with the cache reading the time from `clock` (tests move a `ManualClock`).
    pub fn open_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<App>> {
        let store = Store::open(&config.data_dir)?;
        App::assemble(config, clock, store)
    }

    /// `open`, with blob bytes kept by another backend than local files.
    pub fn open_with_blobs(config: Config, clock: Arc<dyn Clock>, blobs: Arc<dyn BlobStore>) -> Result<Arc<App>> {
        let store = Store::with_blobs(&config.data_dir, blobs)?;
        App::assemble(config, clock, store)
    }

    fn assemble(config: Config, clock: Arc<dyn Clock>, store: Store) -> Result<Arc<App>> {
        let metrics = Arc::new(Metrics::default());
        let upstreams = Upstreams::build(&config, metrics.clone())?;
        let cache = Arc::new(Cache::new(store, Settings::from_config(&config), metrics, clock));
        if let (Some(shared), Some(storage)) = (upstreams.shared(), &config.storage) {
            let (node, sweeper) = match upstreams.cluster() {
                Some(c) => (c.node_name(), c.is_self(c.owner(crate::cache::tier::SWEEP_KEY))),
                None => ("standalone".to_owned(), true),
            };
            cache.set_tier(crate::cache::tier::Tier {
                shared: shared.clone(),
                node,
                sweeper,
                limits: storage.limits,
            });
        }
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

    /// `open`, with the store reconciled before it returns: for the commands that read or
    /// sweep the whole index. Blocking.
    pub fn build(config: Config) -> Result<Arc<App>> {
        let app = App::open(config)?;
        app.cache.reconcile()?;
        Ok(app)
    }
}
