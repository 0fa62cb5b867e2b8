#!/bin/bash
#
# clouddisco devstack plugin: an HA control plane for virtual routers.
#
# local.conf:  enable_plugin clouddisco <repo-url> [branch]
#
# devstack sources this file once per phase with the mode and phase as
# arguments (devstack/settings was sourced before). What each phase does:
#
#   stack install      setup_develop the repo
#   stack post-config  clouddisco.conf, the uwsgi config, the database and
#                      its schema (clouddisco-db-manage upgrade head)
#   stack extra        Keystone user, service (type l3-ha) and endpoint,
#                      then the services as devstack@<name>.service
#   unstack            stop the services
#   clean              remove the router namespaces, the configuration and
#                      the state the services left
#
# See doc/source/install.rst.

# Save trace setting
_XTRACE_CLOUDDISCO=$(set +o | grep xtrace)
set +o xtrace

# The controller's share: the API and the scheduler own the database and
# the Keystone entries; a network node runs only the agent and its guard.
function is_clouddisco_controller {
    is_service_enabled clouddisco-api clouddisco-scheduler
}

# install_clouddisco() - the code and its console scripts
function install_clouddisco {
    setup_develop "$CLOUDDISCO_DIR"
}

# configure_clouddisco() - clouddisco.conf and the API's uwsgi config
function configure_clouddisco {
    sudo install -d -o "$STACK_USER" "$CLOUDDISCO_CONF_DIR"
    # Written from scratch each time, as devstack's own services do.
    rm -f "$CLOUDDISCO_CONF"

    iniset "$CLOUDDISCO_CONF" DEFAULT debug "$ENABLE_DEBUG_LOG_LEVEL"
    iniset_rpc_backend clouddisco "$CLOUDDISCO_CONF"
    iniset "$CLOUDDISCO_CONF" database connection "$(database_connection_url clouddisco)"

    iniset "$CLOUDDISCO_CONF" api auth_strategy "$CLOUDDISCO_AUTH_STRATEGY"
    iniset "$CLOUDDISCO_CONF" api external_cidr "$CLOUDDISCO_EXTERNAL_CIDR"
    iniset "$CLOUDDISCO_CONF" api external_reserved_ips "$CLOUDDISCO_EXTERNAL_RESERVED_IPS"
    configure_keystone_authtoken_middleware "$CLOUDDISCO_CONF" clouddisco keystone_authtoken "$CLOUDDISCO_SERVICE_TYPE"

    iniset "$CLOUDDISCO_CONF" agent router_driver netns
    iniset "$CLOUDDISCO_CONF" agent external_bridge "$CLOUDDISCO_EXTERNAL_BRIDGE"
    iniset "$CLOUDDISCO_CONF" agent state_dir "$CLOUDDISCO_STATE_DIR"

    if is_service_enabled clouddisco-api; then
        # Apache proxies $CLOUDDISCO_API_PATH to uwsgi's socket.
        write_uwsgi_config "$CLOUDDISCO_UWSGI_CONF" "$CLOUDDISCO_UWSGI_APP" "$CLOUDDISCO_API_PATH" "" "clouddisco-api"
    fi
}

# init_clouddisco() - a fresh database at the newest schema
function init_clouddisco {
    if is_clouddisco_controller; then
        recreate_database clouddisco
        "$CLOUDDISCO_BIN_DIR/clouddisco-db-manage" --config-file "$CLOUDDISCO_CONF" upgrade head
    fi
}

# create_clouddisco_accounts() - service user, service and endpoint
function create_clouddisco_accounts {
    create_service_user clouddisco admin
    local service_id
    service_id=$(get_or_create_service "$CLOUDDISCO_SERVICE_NAME" "$CLOUDDISCO_SERVICE_TYPE" "clouddisco HA virtual routers")
    get_or_create_endpoint "$service_id" "$REGION_NAME" "$CLOUDDISCO_API_URL"
}

# start_clouddisco() - every enabled service; run_process skips the others
function start_clouddisco {
    run_process clouddisco-api "$(which uwsgi) --procname-prefix clouddisco-api --ini $CLOUDDISCO_UWSGI_CONF" "" "" "CLOUDDISCO_CONFIG_FILE=$CLOUDDISCO_CONF"
    run_process clouddisco-scheduler "$CLOUDDISCO_BIN_DIR/clouddisco-scheduler --config-file $CLOUDDISCO_CONF"
    # The node guard first: it keeps the node's lease while the agent
    # (re)starts, and fences the node if the agent cannot come back. Both
    # run as root: they create and remove network namespaces.
    run_process clouddisco-cleanup "$CLOUDDISCO_BIN_DIR/clouddisco-cleanup --daemon --config-file $CLOUDDISCO_CONF" "" root
    run_process clouddisco-l3 "$CLOUDDISCO_BIN_DIR/clouddisco-l3-agent --config-file $CLOUDDISCO_CONF" "" root
}

# stop_clouddisco() - the reverse of start_clouddisco. A stopped agent
# leaves its routers in place (a planned stop); `clean` removes them.
function stop_clouddisco {
    stop_process clouddisco-l3
    stop_process clouddisco-cleanup
    stop_process clouddisco-scheduler
    stop_process clouddisco-api
}

# cleanup_clouddisco() - what the services left on this host
function cleanup_clouddisco {
    if is_service_enabled clouddisco-l3 clouddisco-cleanup && [[ -f "$CLOUDDISCO_CONF" ]]; then
        # Every router namespace of this node's prefix; needs no server.
        sudo "$CLOUDDISCO_BIN_DIR/clouddisco-cleanup" --config-file "$CLOUDDISCO_CONF" --all
    fi
    if is_service_enabled clouddisco-api; then
        remove_uwsgi_config "$CLOUDDISCO_UWSGI_CONF" clouddisco-api
    fi
    sudo rm -rf "$CLOUDDISCO_STATE_DIR" "$CLOUDDISCO_CONF_DIR"
}

# shellcheck disable=SC2086  # a list of names, split on purpose
if is_service_enabled $CLOUDDISCO_SERVICES; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing clouddisco"
        install_clouddisco
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring clouddisco"
        configure_clouddisco
        init_clouddisco
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting clouddisco"
        if is_clouddisco_controller; then
            create_clouddisco_accounts
        fi
        start_clouddisco
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_clouddisco
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_clouddisco
    fi
fi

# Restore xtrace
$_XTRACE_CLOUDDISCO
