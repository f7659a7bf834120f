"""tasks/{id}/: the state of a background task started through the API."""

from __future__ import annotations

from django_q.models import Task
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import QueuedTask, Scope
from api.permissions import scoped


class TaskStatusSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["queued", "succeeded", "failed"])
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    result = serializers.JSONField(allow_null=True, help_text="The task's return value, or its error when failed")


@extend_schema(responses={200: TaskStatusSerializer}, summary="State of a background task started through the API")
@api_view(["GET"])
@permission_classes([scoped(read=(Scope.SEGMENTS_READ, Scope.SEGMENTS_WRITE))])
def task_status(request: Request, task_id: str) -> Response:
    queued = generics.get_object_or_404(QueuedTask, task_id=task_id)
    done = Task.objects.filter(id=task_id).first()
    body = {
        "id": queued.task_id,
        "name": queued.name,
        "status": "queued" if done is None else ("succeeded" if done.success else "failed"),
        "created_at": queued.created_at,
        "started_at": done.started if done else None,
        "finished_at": done.stopped if done else None,
        "result": None if done is None else (done.result if done.success else str(done.result)),
    }
    return Response(TaskStatusSerializer(body).data)
