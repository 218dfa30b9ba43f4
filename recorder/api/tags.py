"""``/api/tags``: the tag vocabulary with usage counts."""

from __future__ import annotations

from flask.views import MethodView

from recorder import services
from recorder.api.context import recorder_context
from recorder.api.traced import Blueprint
from recorder.schemas import TagSchema

blp = Blueprint("tags", __name__, url_prefix="/api/tags", description="Tags")


@blp.route("")
class Tags(MethodView):
    @blp.response(200, TagSchema(many=True))
    def get(self) -> list[services.TagCount]:
        return services.list_tags(recorder_context().db)
