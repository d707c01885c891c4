//! The lake: everything imgpipe's stages share — config, image ids, the
//! object layout and its keys, record schemas, storage, and the
//! `ImageReceived` event. Stages talk to each other only through this crate.

pub mod access;
pub mod admission;
pub mod clock;
pub mod config;
pub mod erasure;
pub mod event;
pub mod failpoint;
pub mod id;
pub mod index;
pub mod layout;
pub mod metadata;
pub mod reconcile;
pub mod records;
pub mod schema;
pub mod scratch;
pub mod sniff;
pub mod source;
pub mod state;
pub mod store;

pub use clock::{Clock, FixedClock, SharedClock, SystemClock};
pub use event::{EmitError, EventSink, ImageReceived, Source};
pub use id::ImageId;
pub use layout::Layout;
pub use source::{Delivery, EventSource, InProgress};
pub use store::{ObjectInfo, SharedStore, Store, StoreError};
