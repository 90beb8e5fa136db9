"""The search server: ``create_app`` (FastAPI) over catalogues, and the draw-and-search page in ``static/``."""

from .app import Catalogue, create_app

__all__ = ["Catalogue", "create_app"]
