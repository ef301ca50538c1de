//! One page of a Kubernetes list, read as JSON values without the items' `managedFields`: the
//! provisioner compares what it set and never reads who set it, and managed fields make up
//! about half of a listed ResourceQuota (half the parsing, more than half the allocations).

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The items and the continue token of one page.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// The objects (without kind and apiVersion, as lists send them; null when none).
    #[serde(default)]
    pub items: Option<Vec<Item>>,
    /// The list's metadata.
    #[serde(default)]
    pub metadata: PageMeta,
}

/// The list's own metadata.
#[derive(Debug, Default, Deserialize)]
pub struct PageMeta {
    /// Where the next page starts (empty or missing on the last page).
    #[serde(rename = "continue", default)]
    pub continue_token: Option<String>,
}

/// One object of a page.
#[derive(Debug)]
pub struct Item(pub Value);

/// An object's metadata without its `managedFields`.
struct Meta(Value);

/// Builds a JSON object key by key, reading `metadata` (when `meta`) without managed fields, or
/// any other object whole.
struct ObjectVisitor {
    /// Read the value of `metadata` as [`Meta`].
    meta: bool,
    /// Skip the value of `managedFields`.
    skip_managed: bool,
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.skip_managed && key == "managedFields" {
                map.next_value::<IgnoredAny>()?;
            } else if self.meta && key == "metadata" {
                let Meta(v) = map.next_value()?;
                out.insert(key, v);
            } else {
                out.insert(key, map.next_value()?);
            }
        }
        Ok(Value::Object(out))
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor {
            meta: true,
            skip_managed: false,
        })
        .map(Item)
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor {
            meta: false,
            skip_managed: true,
        })
        .map(Meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_keep_everything_but_their_managed_fields() {
        let text = json!({"kind": "ResourceQuotaList", "metadata": {"continue": "abc"}, "items": [
            {"metadata": {"name": "q", "namespace": "n", "labels": {"a": "b"},
                "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}]},
             "spec": {"hard": {"pods": "16", "managedFields": "kept: not metadata"}}},
            {"metadata": {"name": "r"}}
        ]})
        .to_string();
        let page: Page = serde_json::from_str(&text).unwrap();
        assert_eq!(page.metadata.continue_token.as_deref(), Some("abc"));
        let items = page.items.unwrap();
        assert_eq!(
            items[0].0,
            json!({"metadata": {"name": "q", "namespace": "n", "labels": {"a": "b"}},
                "spec": {"hard": {"pods": "16", "managedFields": "kept: not metadata"}}})
        );
        assert_eq!(items[1].0, json!({"metadata": {"name": "r"}}));
    }

    #[test]
    fn the_last_page_has_no_continue_and_an_empty_list_no_items() {
        for text in [
            r#"{"metadata": {}, "items": null}"#,
            r#"{"metadata": {"continue": ""}, "items": []}"#,
            r#"{"metadata": {}}"#,
        ] {
            let page: Page = serde_json::from_str(text).unwrap();
            assert!(page.items.unwrap_or_default().is_empty(), "{text}");
            assert!(page.metadata.continue_token.unwrap_or_default().is_empty());
        }
    }
}
