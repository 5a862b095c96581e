//! The state every request handler reads: settings, the data file, the resolver, identity.

use std::sync::Arc;

use crate::config::Config;
use crate::dns::Resolver;
use crate::lifecycle::Lifecycle;
use crate::storage::Storage;

pub struct App {
    pub config: Config,
    pub storage: Storage,
    pub resolver: Arc<Resolver>,
    pub lifecycle: Arc<Lifecycle>,
    /// The pod's hostname: the StatefulSet's stable `<name>-<ordinal>`.
    pub hostname: String,
    /// `hello from v2:<hostname>`: the seed's reply to `/store`, and what an empty body stores.
    pub greeting: String,
}
