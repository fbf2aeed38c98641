use std::sync::Arc;

use apiary_intel::{FeedManager, Intel};
use apiary_store::Store;
use arc_swap::ArcSwap;

use crate::bad_hosts_cache::BadHostsCache;
use crate::config::ApiConfig;
use crate::credentials::CredentialCache;
use crate::ip_answers::IpAnswers;

/// The swappable intelligence snapshot: a feed refresh stores a new `Arc<Intel>`,
/// every request loads the current one once and answers from it.
pub type IntelHandle = Arc<ArcSwap<Intel>>;

/// What every handler shares: the store, settings and caches. Cloned for
/// every request (each extractor and middleware takes its own), so it is one
/// `Arc`: one reference count to touch instead of one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields behind an [`AppState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub config: Arc<ApiConfig>,
    pub(crate) bad_hosts: BadHostsCache,
    /// IP intelligence (built-in bogons only until feeds are loaded).
    pub intel: IntelHandle,
    /// The feed manager behind `intel`, when the server runs one.
    pub feeds: Option<Arc<FeedManager>>,
    pub(crate) credentials: CredentialCache,
    /// Rendered `/ip/{ip}` answers, valid while their inputs are unchanged.
    pub(crate) ip_answers: IpAnswers,
}

impl AppState {
    /// A state with no feeds: lookups know the built-in bogon registries only
    /// and say which sources are missing.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> AppState {
        Self::with_intel(store, config, Arc::new(ArcSwap::from_pointee(Intel::default())))
    }

    /// A state answering from an intelligence handle the caller keeps (and may swap).
    pub fn with_intel(store: Arc<dyn Store>, config: ApiConfig, intel: IntelHandle) -> AppState {
        AppState(Arc::new(Shared::new(store, config, intel, None)))
    }

    /// A state answering from a feed manager's snapshots (refreshes show at once).
    pub fn with_feeds(store: Arc<dyn Store>, config: ApiConfig, feeds: Arc<FeedManager>) -> AppState {
        AppState(Arc::new(Shared::new(store, config, feeds.handle(), Some(feeds))))
    }
}

impl Shared {
    fn new(store: Arc<dyn Store>, config: ApiConfig, intel: IntelHandle, feeds: Option<Arc<FeedManager>>) -> Shared {
        Shared {
            store,
            bad_hosts: BadHostsCache::new(config.bad_hosts_refresh),
            config: Arc::new(config),
            intel,
            feeds,
            credentials: Default::default(),
            ip_answers: Default::default(),
        }
    }

    /// The current intelligence snapshot; hold it for one request.
    pub(crate) fn intel(&self) -> Arc<Intel> {
        self.intel.load_full()
    }

    /// Runs a small store read on the calling task's thread. For reads of a
    /// few index seeks (one IP's history, its CVE sightings), handing the
    /// call to the blocking pool costs more than the read itself: two thread
    /// wake-ups and context switches per request, most of the CPU of a
    /// `/ip/{ip}` answer. Anything that scans or may be slow goes through
    /// [`AppState::with_store`] instead.
    pub(crate) fn read_now<T>(
        &self,
        f: impl FnOnce(&dyn Store) -> apiary_store::Result<T>,
    ) -> Result<T, crate::ApiError> {
        f(&*self.store).map_err(crate::ApiError::from)
    }

    /// Runs a store call on the blocking pool.
    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> apiary_store::Result<T> + Send + 'static,
    ) -> Result<T, crate::ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| crate::ApiError::Internal(format!("store task failed: {e}")))?
            .map_err(crate::ApiError::from)
    }
}
