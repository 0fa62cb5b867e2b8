import warnings

# Same filter as clouddisco.cmd: oslo.service's eventlet deprecation warning is
# noise (clouddisco uses threads only).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
