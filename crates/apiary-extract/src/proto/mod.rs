//! One parser per protocol family; each emits into a [`crate::sink::Sink`].

pub(crate) mod dns;
pub mod http;
pub(crate) mod lineproto;
pub(crate) mod memcached;
pub(crate) mod mysql;
pub(crate) mod redis;
pub(crate) mod shell;
pub(crate) mod vnc;
