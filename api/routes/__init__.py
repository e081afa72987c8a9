"""Route modules; each exposes ``router(ctx) -> APIRouter``."""
