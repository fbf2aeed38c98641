use std::sync::Arc;

use apiary_store::Store;

use crate::bad_hosts_cache::BadHostsCache;
use crate::config::ApiConfig;

/// What every handler shares: the store, settings and caches.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ApiConfig>,
    pub(crate) bad_hosts: Arc<BadHostsCache>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> AppState {
        let bad_hosts = Arc::new(BadHostsCache::new(config.bad_hosts_refresh));
        AppState { store, config: Arc::new(config), bad_hosts }
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
