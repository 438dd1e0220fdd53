//! End-to-end tests live in `tests/`: the three programs together against a real etcd, the
//! Kubernetes test API server and real DNS clients. This library is intentionally empty.
