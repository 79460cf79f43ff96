//! A list request as both providers' references describe them: query
//! parameters that may repeat (`id=1&id=2`, `sort=name&sort=id:desc`), the
//! absolute URL of the request (for pagination links), and the page window
//! (`page`, `per_page`).

use axum::extract::{FromRequestParts, OriginalUri, Query};
use axum::http::request::Parts;
use serde_json::Value;
use std::cmp::Ordering;
use std::convert::Infallible;

/// The query of a request, in order, repeated keys kept, and the request's
/// URL without its query.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// `(key, value)` pairs, decoded.
    pub params: Vec<(String, String)>,
    /// `http://HOST/PATH` of the request as the client sent it.
    pub url: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Listing {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map(|o| o.0.clone())
            .unwrap_or_else(|| parts.uri.clone());
        let params = Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let host = parts
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        Ok(Listing {
            params,
            url: format!("http://{host}{}", uri.path()),
        })
    }
}

/// One page of a list, and where the others are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub page: u64,
    pub per_page: u64,
    pub last_page: u64,
    pub total: u64,
}

impl Listing {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The page window over `total` items: `page` (default 1) and `per_page`
    /// (default `default`, at most `max`). Err names the bad parameter.
    pub fn window(&self, total: u64, default: u64, max: u64) -> Result<Window, String> {
        let num = |k: &str, d: u64| match self.get(k) {
            None => Ok(d),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{k} must be a positive integer, not `{v}`")),
            },
        };
        let page = num("page", 1)?;
        let per_page = num("per_page", default)?.min(max);
        Ok(Window {
            page,
            per_page,
            last_page: total.div_ceil(per_page).max(1),
            total,
        })
    }

    /// The URL of page `page` of this list: the same query with `page` and
    /// `per_page` replaced.
    pub fn page_url(&self, page: u64, per_page: u64) -> String {
        let mut url = format!("{}?page={page}&per_page={per_page}", self.url);
        for (k, v) in &self.params {
            if k != "page" && k != "per_page" {
                url.push('&');
                url.push_str(&encode(k));
                url.push('=');
                url.push_str(&encode(v));
            }
        }
        url
    }

    /// Sorts `items` by every `sort` parameter (`field`, `field:asc`,
    /// `field:desc`; the first decides, later ones break ties). A field must
    /// be one of `allowed`. Err names the bad value.
    pub fn sort(&self, items: &mut [Value], allowed: &[&str]) -> Result<(), String> {
        let mut keys = Vec::new();
        for s in self.all("sort") {
            let (field, desc) = match s.split_once(':') {
                None => (s, false),
                Some((f, "asc")) => (f, false),
                Some((f, "desc")) => (f, true),
                Some(_) => return Err(format!("sort `{s}`: the direction must be asc or desc")),
            };
            if !allowed.contains(&field) {
                return Err(format!(
                    "sort `{s}`: cannot sort by {field} (one of: {})",
                    allowed.join(", ")
                ));
            }
            keys.push((field.to_string(), desc));
        }
        items.sort_by(|a, b| {
            for (field, desc) in &keys {
                let o = compare(&a[field.as_str()], &b[field.as_str()]);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        Ok(())
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Percent-encodes a query key or value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(params: &[(&str, &str)]) -> Listing {
        Listing {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: "http://h/v1/servers".into(),
        }
    }

    #[test]
    fn repeated_keys_are_kept_and_sorts_apply_in_order() {
        let l = listing(&[
            ("id", "3"),
            ("id", "1"),
            ("sort", "name:desc"),
            ("sort", "id"),
        ]);
        assert_eq!(l.all("id"), ["3", "1"]);
        let mut items = vec![
            json!({"id": 2, "name": "a"}),
            json!({"id": 3, "name": "b"}),
            json!({"id": 1, "name": "b"}),
        ];
        l.sort(&mut items, &["id", "name"]).unwrap();
        let ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!(listing(&[("sort", "color")])
            .sort(&mut items, &["id"])
            .unwrap_err()
            .contains("cannot sort by color"));
        assert!(listing(&[("sort", "id:up")])
            .sort(&mut items, &["id"])
            .is_err());
    }

    #[test]
    fn windows_and_page_urls() {
        let l = listing(&[("per_page", "2"), ("label_selector", "a=b"), ("page", "2")]);
        let w = l.window(5, 25, 50).unwrap();
        assert_eq!((w.page, w.per_page, w.last_page, w.total), (2, 2, 3, 5));
        assert_eq!(
            l.page_url(3, 2),
            "http://h/v1/servers?page=3&per_page=2&label_selector=a%3Db"
        );
        assert!(listing(&[("page", "0")]).window(1, 25, 50).is_err());
        assert_eq!(
            listing(&[("per_page", "500")])
                .window(1, 25, 50)
                .unwrap()
                .per_page,
            50
        );
    }
}
