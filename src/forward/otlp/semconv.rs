//! The attribute names the gateway writes, from the OpenTelemetry semantic conventions v1.37.0
//! (docs/forwarding.md). One place, so that a test pins them all.

// Resource.
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
pub const BROWSER_BRANDS: &str = "browser.brands";
pub const BROWSER_PLATFORM: &str = "browser.platform";
pub const BROWSER_MOBILE: &str = "browser.mobile";
pub const BROWSER_LANGUAGE: &str = "browser.language";
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
/// `telemetry.sdk.language` of a browser SDK.
pub const WEBJS: &str = "webjs";
/// The gateway names itself here: it is part of the distribution that captured the data.
pub const TELEMETRY_DISTRO_NAME: &str = "telemetry.distro.name";
pub const TELEMETRY_DISTRO_VERSION: &str = "telemetry.distro.version";

// Log record.
pub const SESSION_ID: &str = "session.id";
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";
pub const URL_FULL: &str = "url.full";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
pub const CLIENT_ADDRESS: &str = "client.address";
/// Not a semantic convention: the seed's `requestId`, kept under the seed's name (its contract).
pub const REQUEST_ID: &str = "request.id";

/// Log record attributes the gateway sets: a context key with one of these names is dropped
/// (counted in `droppedAttributesCount`), whether or not this record has a value for it.
pub const RECORD_RESERVED: [&str; 8] = [
    SESSION_ID,
    REQUEST_ID,
    EXCEPTION_TYPE,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    URL_FULL,
    USER_AGENT_ORIGINAL,
    CLIENT_ADDRESS,
];
