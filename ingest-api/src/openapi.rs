//! The API's description, generated from the handlers' annotations and
//! served at `/openapi.json` (Swagger UI at `/docs`, from vendored assets).

use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// Every error: a stable code and words for people.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// One of the codes in the README's table (`too_large`, `unauthorized`, …).
    pub error: String,
    pub detail: String,
}

/// What every authenticated route may answer besides its own outcomes.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // Describes answers for the spec; never built.
pub enum Refusals {
    /// No valid API key or token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller lacks the route's permission, or a column its policy hides
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Took longer than `api.request_timeout`
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// Over a rate limit; `Retry-After` says when to retry
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// The lake is not answering, or the server is stopping; `Retry-After`
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imgpipe",
        description = "Image uploads into a lake that purges every image and everything derived from it 7 days after it arrived.",
    ),
    paths(
        crate::upload::upload,
        crate::listing::get_images,
        crate::routes::get_image,
        crate::routes::erase_image,
        crate::routes::thumbnail,
        crate::direct::create,
        crate::direct::put_data,
        crate::direct::complete,
        crate::routes::healthz,
        crate::routes::metrics,
    ),
    components(schemas(
        ErrorBody,
        crate::upload::Accepted,
        crate::upload::AcceptedMany,
        crate::upload::UploadAnswer,
        crate::status::ImageStatus,
        crate::status::Status,
        crate::listing::ImagePage,
        crate::direct::NewUpload,
        crate::direct::UploadTicket,
        crate::routes::Health,
    )),
    modifiers(&Security),
    tags(
        (name = "images", description = "Upload, look up, list and erase images"),
        (name = "uploads", description = "Direct uploads of large images, straight to storage"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, or a JWT from the configured identity provider",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
