//! Where a batch comes from: the app, page, browser and SDK the client sends once per batch, and
//! what the gateway itself knows of the request (`User-Agent`, the client's address). Shared by
//! every event of the request; each ingest format fills the same `Origin`. Unknown fields are
//! ignored, so a newer client still gets through an older gateway.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Invalid, OriginLimits, Reason, text_field};

/// A bounded JSON object's text, compared by its text.
#[derive(Debug, Clone)]
pub struct Attributes<'a>(pub Cow<'a, serde_json::value::RawValue>);

impl PartialEq for Attributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// The context of every event of one request. Every field is optional: an old client sends none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin<'a> {
    pub app: App<'a>,
    /// The page's URL as the client sent it (the client drops query and fragment by default).
    pub page_url: Option<Cow<'a, str>>,
    pub browser: Browser<'a>,
    pub sdk: Sdk<'a>,
    /// The request's `User-Agent`, cut at `max_user_agent_bytes`.
    pub user_agent: Option<Cow<'a, str>>,
    /// Only when `CLIENT_TELEMETRY_RECORD_CLIENT_ADDRESS` is on.
    pub client_address: Option<String>,
    /// Resource attributes an OTLP sender set beyond the ones above, as a bounded JSON object;
    /// exported as they are (scrubbed), after the gateway's own.
    pub attributes: Option<Attributes<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct App<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// The release (`service.version`).
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub environment: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Browser<'a> {
    pub language: Option<Cow<'a, str>>,
    /// Each brand as "name version", as `browser.brands` has them.
    pub brands: Vec<String>,
    pub platform: Option<Cow<'a, str>>,
    pub mobile: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Sdk<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
}

impl Origin<'_> {
    /// The same origin, owning its text (for formats whose decoder builds it from a tree).
    pub fn into_owned(self) -> Origin<'static> {
        let own = |value: Option<Cow<'_, str>>| value.map(|v| Cow::Owned(v.into_owned()));
        Origin {
            app: App {
                name: own(self.app.name),
                version: own(self.app.version),
                environment: own(self.app.environment),
            },
            page_url: own(self.page_url),
            browser: Browser {
                language: own(self.browser.language),
                brands: self.browser.brands,
                platform: own(self.browser.platform),
                mobile: self.browser.mobile,
            },
            sdk: Sdk { name: own(self.sdk.name), version: own(self.sdk.version) },
            user_agent: own(self.user_agent),
            client_address: self.client_address,
            attributes: self.attributes.map(|a| Attributes(Cow::Owned(a.0.into_owned()))),
        }
    }
}

/// The batch's own fields as sent, before validation.
#[derive(Debug, Default, Deserialize)]
pub struct WireOrigin<'a> {
    #[serde(borrow, default)]
    pub app: Option<App<'a>>,
    #[serde(borrow, default)]
    pub page: Option<WirePage<'a>>,
    #[serde(borrow, default)]
    pub browser: Option<WireBrowser<'a>>,
    #[serde(borrow, default)]
    pub sdk: Option<Sdk<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct WirePage<'a> {
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct WireBrowser<'a> {
    #[serde(borrow, default)]
    language: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    brands: Option<Vec<WireBrand<'a>>>,
    #[serde(borrow, default)]
    platform: Option<Cow<'a, str>>,
    #[serde(default)]
    mobile: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireBrand<'a> {
    #[serde(borrow)]
    brand: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
}

/// Checks the batch's fields; the first bad one is named (`browser.brands[2].brand`, …).
pub fn validate_origin<'a>(wire: WireOrigin<'a>, limits: &OriginLimits) -> Result<Origin<'a>, Invalid> {
    let name = |field: &str, value: &Option<Cow<'a, str>>| match value {
        Some(value) => text_field(field, value, limits.max_name_bytes, true),
        None => Ok(()),
    };
    let app = wire.app.unwrap_or_default();
    name("app.name", &app.name)?;
    name("app.version", &app.version)?;
    name("app.environment", &app.environment)?;
    let sdk = wire.sdk.unwrap_or_default();
    name("sdk.name", &sdk.name)?;
    name("sdk.version", &sdk.version)?;
    let page_url = wire.page.and_then(|page| page.url);
    if let Some(url) = &page_url {
        text_field("page.url", url, limits.max_url_bytes, true)?;
    }
    let browser = match wire.browser {
        None => Browser::default(),
        Some(wire) => {
            name("browser.language", &wire.language)?;
            name("browser.platform", &wire.platform)?;
            let brands = wire.brands.unwrap_or_default();
            if brands.len() > limits.max_brands {
                return Err(Invalid::new(
                    Reason::InvalidField,
                    format!(
                        "`browser.brands` has {} entries, more than the limit of {}",
                        brands.len(),
                        limits.max_brands
                    ),
                ));
            }
            let mut formatted = Vec::with_capacity(brands.len());
            for (i, brand) in brands.iter().enumerate() {
                text_field(format_args!("browser.brands[{i}].brand"), &brand.brand, limits.max_name_bytes, true)?;
                text_field(format_args!("browser.brands[{i}].version"), &brand.version, limits.max_name_bytes, false)?;
                let mut name = format!("{} {}", brand.brand, brand.version);
                name.truncate(name.trim_end().len());
                formatted.push(name);
            }
            Browser { language: wire.language, brands: formatted, platform: wire.platform, mobile: wire.mobile }
        }
    };
    Ok(Origin { app, page_url, browser, sdk, user_agent: None, client_address: None, attributes: None })
}

/// `value` cut to at most `max` bytes, at a character boundary.
pub fn truncate(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(json: &str) -> Result<Origin<'_>, Invalid> {
        let wire: WireOrigin = serde_json::from_str(json).map_err(|e| Invalid::new(Reason::Schema, e.to_string()))?;
        validate_origin(wire, &OriginLimits::default())
    }

    #[test]
    fn the_batch_context_is_read_and_brands_are_formatted_as_semconv_has_them() {
        let o = origin(
            r#"{"app":{"name":"shop","version":"1.4.2","environment":"production"},"page":{"url":"https://shop.example/checkout"},
            "browser":{"language":"de-DE","brands":[{"brand":"Chromium","version":"126"}],"platform":"macOS","mobile":false},
            "sdk":{"name":"@client-telemetry/browser","version":"0.2.0"},"events":[]}"#,
        )
        .unwrap();
        assert_eq!(o.app.name.as_deref(), Some("shop"));
        assert_eq!(o.app.version.as_deref(), Some("1.4.2"));
        assert_eq!(o.page_url.as_deref(), Some("https://shop.example/checkout"));
        assert_eq!(o.browser.brands, ["Chromium 126"]);
        assert_eq!(o.browser.mobile, Some(false));
        assert_eq!(o.sdk.version.as_deref(), Some("0.2.0"));
        assert_eq!(origin("{}").unwrap(), Origin::default());
    }

    #[test]
    fn bad_batch_context_is_named() {
        let brands: Vec<String> = (0..11).map(|i| format!(r#"{{"brand":"B{i}","version":"1"}}"#)).collect();
        let cases = [
            (format!(r#"{{"browser":{{"brands":[{}]}}}}"#, brands.join(",")), "more than the limit of 10"),
            (r#"{"app":{"name":""}}"#.to_string(), "`app.name` must not be empty"),
            (format!(r#"{{"app":{{"version":"{}"}}}}"#, "9".repeat(129)), "`app.version` is 129 bytes"),
            (format!(r#"{{"page":{{"url":"https://a.example/{}"}}}}"#, "p".repeat(2048)), "`page.url` is"),
            (r#"{"browser":{"mobile":"yes"}}"#.to_string(), "expected a boolean"),
            (r#"{"app":{"name":7}}"#.to_string(), "expected a string"),
            (r#"{"app":"shop"}"#.to_string(), "expected struct App"),
        ];
        for (json, needle) in cases {
            let message = origin(&json).unwrap_err().message;
            assert!(message.contains(needle), "{json}: {message:?} should mention {needle:?}");
        }
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abcé", 4), "abc");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
