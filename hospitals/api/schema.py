"""OpenAPI additions: the OAuth2 client-credentials security scheme with its three scopes
(each operation names the scope it needs), and the problem-details error answers added
to every operation by a postprocessing hook."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from .scopes import ACTION_SCOPES, API_SCOPES

OAUTH2_SCHEME = "oauth2"


class PartnerOAuth2Scheme(OpenApiAuthenticationExtension):
    target_class = "hospitals.api.authentication.PartnerOAuth2Authentication"
    name = OAUTH2_SCHEME
    priority = 1  # over drf-spectacular's built-in scheme for its parent class

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": ("OAuth2 client credentials. A hospital admin creates the client in the portal "
                            "(API clients page) and chooses its scopes; the token is bound to that hospital."),
            "flows": {"clientCredentials": {"tokenUrl": "/o/token/", "scopes": dict(API_SCOPES)}},
        }

    def get_security_requirement(self, auto_schema):
        from rest_framework.viewsets import ViewSetMixin  # not at import: DRF's settings import this module

        view = auto_schema.view
        key = getattr(view, "action", None) if isinstance(view, ViewSetMixin) else auto_schema.method.lower()
        policy = getattr(view, "action_policies", {}).get(key)
        scope = ACTION_SCOPES.get(policy)
        return {self.name: [scope] if scope else []}


PROBLEM = {
    "type": "object",
    "description": "RFC 7807 problem details.",
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "retry_after": {"type": "integer", "description": "429 only: seconds to wait."},
    },
    "required": ["type", "title", "status", "detail", "instance"],
}
VALIDATION_PROBLEM = {
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "object",
                    "description": "Field name -> messages; `non_field_errors` for the request as a whole.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                }
            },
            "required": ["errors"],
        },
    ]
}
ERRORS = {
    "400": ("The request is invalid (field by field in `errors`), or the cursor is not valid.", "ValidationProblem"),
    "401": ("No valid credential: send a bearer token (or a portal session).", "Problem"),
    "403": ("The credential lacks the OAuth2 scope or the role for this operation, or a CSRF check failed.",
            "Problem"),
    "404": ("No such hospital for this credential, or no such object in it.", "Problem"),
    "405": ("Method not allowed.", "Problem"),
    "406": ("The Accept header asks for a format the API does not produce.", "Problem"),
    "415": ("Unsupported request content type.", "Problem"),
    "429": ("Rate limit reached (per client or user; uploads also per hospital).", "Problem"),
}


def add_problem_responses(result, generator, request, public):
    """Every operation documents the problem-details answers it can give."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    schemas["ValidationProblem"] = VALIDATION_PROBLEM
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, (description, schema) in ERRORS.items():
                if code in ("415",) and method in ("get", "delete"):
                    continue
                responses.setdefault(code, {
                    "description": description,
                    "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
                })
    return result
