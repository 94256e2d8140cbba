from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/servers/<int:server_id>/terminal/", consumers.TerminalConsumer.as_asgi(), name="terminal"),
    path("ws/terminals/<int:row_id>/watch/", consumers.WatchConsumer.as_asgi(), name="terminal_watch"),
    path("ws/servers/<int:server_id>/containers/<int:container_id>/logs/", consumers.LogConsumer.as_asgi(), name="container_logs"),
    path("ws/servers/<int:server_id>/images/load/", consumers.ImageLoadConsumer.as_asgi(), name="image_load"),
]
