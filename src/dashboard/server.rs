//! The dashboard's HTTP server: pages rendered on the server from the watch caches (no
//! JavaScript), the same data as JSON at the same paths with `Accept: application/json`,
//! Prometheus metrics on /metrics and liveness on /healthz.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::extras::Extras;
use super::watch::Stores;
use super::{metrics, view};

/// The pages, embedded.
const PAGES: &[(&str, &str)] = &[
    ("base.html", include_str!("pages/base.html")),
    ("cluster.html", include_str!("pages/cluster.html")),
    ("tools.html", include_str!("pages/tools.html")),
    ("tool.html", include_str!("pages/tool.html")),
];

/// What the handlers share.
pub struct Dashboard {
    /// The cluster's name (the page titles).
    pub cluster: String,
    /// The watch caches.
    pub stores: Stores,
    /// etcd, certificates, ingress traffic.
    pub extras: Arc<RwLock<Extras>>,
    pages: tera::Tera,
}

impl Dashboard {
    /// A dashboard over `stores`.
    pub fn new(
        cluster: &str,
        stores: Stores,
        extras: Arc<RwLock<Extras>>,
    ) -> Result<Self, tera::Error> {
        let mut pages = tera::Tera::default();
        pages.register_filter("bytes", |b: f64, _: tera::Kwargs, _: &tera::State| bytes(b));
        pages.register_filter("urlencode", |s: &str, _: tera::Kwargs, _: &tera::State| {
            urlencode(s)
        });
        pages.add_raw_templates(PAGES.to_vec())?;
        // Names, labels and messages come from the API: every value is escaped.
        pages.autoescape_on(vec![".html"]);
        Ok(Self {
            cluster: cluster.to_string(),
            stores,
            extras,
            pages,
        })
    }

    fn cluster_view(&self) -> view::ClusterView {
        let extras = self.extras.read().map(|e| e.clone()).unwrap_or_default();
        view::cluster(&self.cluster, &self.stores, extras)
    }

    fn page<T: Serialize>(&self, headers: &HeaderMap, template: &str, v: &T) -> Response {
        let json = headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
        if json {
            return axum::Json(v).into_response();
        }
        let mut ctx = tera::Context::new();
        ctx.insert("cluster", &self.cluster);
        ctx.insert("v", v);
        match self.pages.render(template, &ctx) {
            Ok(html) => {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
            }
            Err(e) => {
                tracing::error!(template, error = ?e, "a dashboard page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render\n",
                )
                    .into_response()
            }
        }
    }
}

/// Bytes for people, in binary units: `512 MiB`, `1.5 GiB`.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 || v.fract() < 0.05 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A query parameter's value, percent-encoded.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Shared = Arc<Dashboard>;

async fn cluster_page(State(d): State<Shared>, headers: HeaderMap) -> Response {
    d.page(&headers, "cluster.html", &d.cluster_view())
}

/// The index's query: a name filter and a page.
#[derive(Deserialize)]
struct IndexQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

async fn tools_page(
    State(d): State<Shared>,
    Query(q): Query<IndexQuery>,
    headers: HeaderMap,
) -> Response {
    let v = view::tool_index(&d.stores, &q.q, q.page.unwrap_or(1));
    d.page(&headers, "tools.html", &v)
}

async fn tool_page(
    State(d): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match view::tool(&d.stores, &name, now) {
        Some(v) => d.page(&headers, "tool.html", &v),
        None => (StatusCode::NOT_FOUND, format!("no tool {name}\n")).into_response(),
    }
}

async fn metrics_page(State(d): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::exposition(&d.cluster_view()),
    )
        .into_response()
}

/// The routes.
pub fn router(d: Shared) -> Router {
    Router::new()
        .route("/", get(cluster_page))
        .route("/tools", get(tools_page))
        .route("/tools/{name}", get(tool_page))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(512.0 * 1024.0 * 1024.0), "512 MiB");
        assert_eq!(bytes(1.5 * 1024f64.powi(3)), "1.5 GiB");
        assert_eq!(bytes(128.0 * 1024f64.powi(3)), "128 GiB");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("tool-1"), "tool-1");
        assert_eq!(urlencode("a&b c"), "a%26b%20c");
    }
}
