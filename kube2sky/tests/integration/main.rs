//! kube2sky integration tests: real etcd + the test API server + kube2sky in-process (and the
//! built binary in `binary`), asserting what etcd holds.

mod auth;
mod binary;
mod common;
mod faults;
mod leader;
mod lifecycle;
mod ownership;
mod security;
