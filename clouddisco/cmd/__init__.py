import warnings

# oslo.messaging imports oslo.service, which imports eventlet and warns that it
# is deprecated. clouddisco never uses eventlet (threads only), so the warning
# would only add noise to every command's stderr and every service log.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
