//! HTTP endpoints over [`State`]: `GET /healthz` (every probe) and `GET /healthz/{probe}`
//! (one), 200 `ok` or 503 with the failing probe and reason, JSON on `Accept: application/json`.
//! Handlers only read the state, so they answer promptly whatever the probes are doing.

use std::collections::BTreeMap;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::state::{ProbeStatus, State};

/// The health router (`/metrics` is merged in by [`crate::run`]).
pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(all))
        .route("/healthz/{probe}", get(one))
        .with_state(state)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

fn code(healthy: bool) -> StatusCode {
    if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Serialize)]
struct Overall {
    status: &'static str,
    max_age_seconds: f64,
    probes: BTreeMap<String, ProbeStatus>,
}

#[derive(Serialize)]
struct Single {
    status: &'static str,
    #[serde(flatten)]
    probe: ProbeStatus,
}

fn word(healthy: bool) -> &'static str {
    if healthy {
        "ok"
    } else {
        "unhealthy"
    }
}

async fn all(AxumState(state): AxumState<State>, headers: HeaderMap) -> Response {
    let statuses = state.all();
    let healthy = statuses.iter().all(|s| s.healthy);
    let resp = if wants_json(&headers) {
        let body = Overall {
            status: word(healthy),
            max_age_seconds: state.max_age().as_secs_f64(),
            probes: statuses.into_iter().map(|s| (s.probe.clone(), s)).collect(),
        };
        (code(healthy), Json(body)).into_response()
    } else if healthy {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let mut body = String::new();
        for s in statuses.iter().filter(|s| !s.healthy) {
            let reason = s.reason.as_deref().unwrap_or("unhealthy");
            body.push_str(&format!("{}: {reason}\n", s.probe));
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    };
    no_store(resp)
}

async fn one(
    AxumState(state): AxumState<State>,
    Path(probe): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(status) = state.status(&probe) else {
        let known: Vec<&str> = state.probes().collect();
        return no_store(
            (
                StatusCode::NOT_FOUND,
                format!(
                    "unknown or disabled probe {probe:?} (enabled: {})\n",
                    known.join(", ")
                ),
            )
                .into_response(),
        );
    };
    let healthy = status.healthy;
    let resp = if wants_json(&headers) {
        let body = Single {
            status: word(healthy),
            probe: status,
        };
        (code(healthy), Json(body)).into_response()
    } else if healthy {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let reason = status.reason.as_deref().unwrap_or("unhealthy");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}: {reason}\n", status.probe),
        )
            .into_response()
    };
    no_store(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ProbeResult;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use std::time::{Duration, Instant};
    use tower::ServiceExt;

    fn state() -> State {
        State::new(["skydns", "kube2sky"], Duration::from_secs(30))
    }

    fn set(state: &State, probe: &str, outcome: Result<(), String>) {
        state.record(
            probe,
            ProbeResult {
                outcome,
                at: Instant::now(),
                latency: Duration::from_millis(4),
            },
        );
    }

    async fn get(state: &State, path: &str, json: bool) -> (StatusCode, String) {
        let mut req = Request::get(path);
        if json {
            req = req.header(header::ACCEPT, "application/json");
        }
        let resp = router(state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ok_when_every_probe_succeeded() {
        let s = state();
        set(&s, "skydns", Ok(()));
        set(&s, "kube2sky", Ok(()));
        assert_eq!(
            get(&s, "/healthz", false).await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get(&s, "/healthz/skydns", false).await,
            (StatusCode::OK, "ok\n".into())
        );
    }

    #[tokio::test]
    async fn before_the_first_run_it_is_unhealthy() {
        let s = state();
        let (code, body) = get(&s, "/healthz", false).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("skydns: no result yet"), "{body}");
        assert!(body.contains("kube2sky: no result yet"), "{body}");
    }

    #[tokio::test]
    async fn failing_probe_is_named_with_its_reason() {
        let s = state();
        set(&s, "skydns", Err("x. A @127.0.0.1:53: NXDOMAIN".into()));
        set(&s, "kube2sky", Ok(()));
        let (code, body) = get(&s, "/healthz", false).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "skydns: x. A @127.0.0.1:53: NXDOMAIN\n");
        assert_eq!(get(&s, "/healthz/kube2sky", false).await.0, StatusCode::OK);
        let (code, body) = get(&s, "/healthz/skydns", false).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("NXDOMAIN"), "{body}");
    }

    #[tokio::test]
    async fn json_on_accept() {
        let s = state();
        set(&s, "skydns", Ok(()));
        set(
            &s,
            "kube2sky",
            Err("GET http://x/readiness: status 503".into()),
        );
        let (code, body) = get(&s, "/healthz", true).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(v["max_age_seconds"], 30.0);
        assert_eq!(v["probes"]["skydns"]["healthy"], true);
        assert_eq!(v["probes"]["kube2sky"]["healthy"], false);
        assert_eq!(v["probes"]["kube2sky"]["consecutive_failures"], 1);
        assert!(v["probes"]["kube2sky"]["reason"]
            .as_str()
            .unwrap()
            .contains("503"));
        let (code, body) = get(&s, "/healthz/skydns", true).await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["probe"], "skydns");
        assert!(v["reason"].is_null());
        assert!(v["latency_seconds"].as_f64().unwrap() > 0.0);
    }

    #[tokio::test]
    async fn disabled_or_unknown_probe_is_404() {
        let s = State::new(["skydns"], Duration::from_secs(30));
        set(&s, "skydns", Ok(()));
        let (code, body) = get(&s, "/healthz/kube2sky", false).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body.contains("enabled: skydns"), "{body}");
        assert_eq!(get(&s, "/healthz", false).await.0, StatusCode::OK);
    }
}
