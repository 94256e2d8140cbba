"""The hosting app's models, one module per topic; every model is importable from here."""

from .domains import Domain
from .nodes import Node
from .operations import Lock, MonitorRun
from .servers import UIDS_PER_SERVER, VirtualServer, validate_server_name, visible_to
from .sessions import TerminalSession
from .workloads import App, AppDeployment, ContainerSnapshot, ImageSnapshot, app_container_states, validate_app_name

__all__ = ["App", "AppDeployment", "ContainerSnapshot", "Domain", "ImageSnapshot", "Lock", "MonitorRun", "Node", "TerminalSession",
           "UIDS_PER_SERVER", "VirtualServer", "app_container_states", "validate_app_name", "validate_server_name", "visible_to"]
