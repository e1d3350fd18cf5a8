//! What every handler and middleware gets: the domain core, the configuration, the
//! gateway and the rendered pages.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::core::Core;
use crate::gateway::Gateway;
use crate::http::pages::Pages;
use crate::http::upstream::Upstream;

/// Cloned for every request (axum hands each route its own copy): one shared pointer, so
/// a clone is one reference-count increment, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The parts of the [`AppState`].
pub struct Parts {
    pub core: Arc<Core>,
    pub config: Arc<Config>,
    pub gateway: Arc<Gateway>,
    pub pages: Arc<Pages>,
    /// Proxy mode: the app behind the origin.
    pub upstream: Option<Arc<Upstream>>,
}

/// The page handlers take only the rendered shells.
impl axum::extract::FromRef<AppState> for Arc<Pages> {
    fn from_ref(state: &AppState) -> Arc<Pages> {
        state.pages.clone()
    }
}
