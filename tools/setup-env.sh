#!/usr/bin/env bash
# Prepare a machine (fresh Debian 12 or an already prepared one) for
# clouddisco development and CI:
#   * Debian packages the functional tests need,
#   * the machine's MariaDB and RabbitMQ running,
#   * the MariaDB account/database `clouddisco`,
#   * the repo's .venv with the project installed in editable mode.
#
# Idempotent and cheap when everything is already there (no apt, no pip),
# so other scripts (.ci/run, bench/) may call it unconditionally:
#     tools/setup-env.sh && .venv/bin/python -m ...
# Prints one line per thing it changed; exits non-zero with a message on
# the first failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.clouddisco-reqs"
PACKAGES=(mariadb-server rabbitmq-server iproute2 iputils-ping python3-venv haproxy shellcheck)
DB_USER=clouddisco
DB_PASS=clouddisco
DB_NAME=clouddisco

# Root's PATH from a minimal environment (cron, CI) may lack the sbin dirs
# that hold rabbitmq-server and start-stop-daemon.
export PATH="$PATH:/usr/sbin:/sbin"

did=0
say() { echo "setup-env: $*"; did=1; }
die() { echo "setup-env: ERROR: $*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

is_root() { [ "$(id -u)" -eq 0 ]; }

# Loopback connects are refused at once when nothing listens, so this
# costs well under a millisecond and needs neither ss nor nc.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
    local deadline=$((SECONDS + $2))
    until port_open "$1"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# Two callers at once (CI and a developer, two bench scripts) would race
# on apt, the service start and pip; serialise them.
exec 9>"/tmp/clouddisco-setup-env.lock"
flock 9

# --- Debian packages --------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query is one fork per package and needs no apt lists.
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    is_root || die "missing Debian packages (${missing[*]}); run this script as root"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd the packages' postinst scripts may fail to start their
    # services and so fail the whole install; deny those starts (the usual
    # container policy-rc.d) and start the services ourselves below.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
    fi
    apt_ok=1
    apt-get update -qq >/dev/null && \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || apt_ok=0
    [ "$own_policy" = 0 ] || rm -f "$policy"
    [ "$apt_ok" = 1 ] || die "apt-get install ${missing[*]} failed"
    say "installed Debian packages: ${missing[*]}"
fi

# --- MariaDB ----------------------------------------------------------------
if ! port_open 3306; then
    is_root || die "MariaDB is not listening on 127.0.0.1:3306; run this script as root to start it"
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    # No systemd as PID 1 here. --pidfile makes start-stop-daemon look only
    # at the machine's own server: other workers run private mariadbd
    # instances (Galera tests) that must not count as "already running".
    start-stop-daemon --start --oknodo --quiet --background \
        --pidfile /run/mysqld/mysqld.pid --exec /usr/sbin/mariadbd -- --user=mysql \
        || die "could not start /usr/sbin/mariadbd"
    deadline=$((SECONDS + 60))
    until mariadb-admin --protocol=socket ping >/dev/null 2>&1 && port_open 3306; do
        [ "$SECONDS" -lt "$deadline" ] || die "MariaDB did not answer within 60 s (see /var/log/mysql or journal)"
        sleep 0.2
    done
    say "started MariaDB (/usr/sbin/mariadbd)"
fi

# --- RabbitMQ ---------------------------------------------------------------
if ! port_open 5672; then
    is_root || die "RabbitMQ is not listening on 127.0.0.1:5672; run this script as root to start it"
    # A broker that is still booting has no port yet; starting a second one
    # with the same node name would only fail, so wait for it instead.
    if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
        wait_port 5672 60 || die "RabbitMQ (already running as user rabbitmq) did not open port 5672 within 60 s"
        say "waited for the already starting RabbitMQ"
    else
        rlog="$(mktemp /tmp/clouddisco-rabbit-start.XXXXXX)"
        # /usr/sbin/rabbitmq-server switches to the rabbitmq user itself.
        if ! rabbitmq-server -detached >"$rlog" 2>&1; then
            cat "$rlog" >&2; rm -f "$rlog"
            die "rabbitmq-server -detached failed"
        fi
        rm -f "$rlog"
        wait_port 5672 60 || die "RabbitMQ did not open port 5672 within 60 s (see /var/log/rabbitmq)"
        say "started RabbitMQ (rabbitmq-server -detached)"
    fi
fi

# --- MariaDB account and database -------------------------------------------
db_ready() {
    # One round trip proves both that the account logs in over TCP with its
    # password and that the database exists.
    local n
    n="$(mariadb -h127.0.0.1 -P3306 -u"$DB_USER" -p"$DB_PASS" -N -B -e \
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='$DB_NAME'" 2>/dev/null)" || return 1
    [ "$n" = 1 ]
}

root_sql() {
    # Root over the unix socket works on a fresh install (unix_socket auth);
    # fall back to TCP with an empty password for machines set up that way.
    mariadb -uroot --protocol=socket -N -B -e "$1" 2>/dev/null \
        || mariadb -uroot -h127.0.0.1 -P3306 -N -B -e "$1"
}

grants_ok() {
    local n
    n="$(root_sql "SELECT COUNT(*) FROM mysql.db WHERE User='$DB_USER' \
        AND Db='clouddisco%' AND Host IN ('127.0.0.1','localhost') \
        AND Create_priv='Y' AND Drop_priv='Y' AND Insert_priv='Y'" 2>/dev/null)" || return 1
    [ "$n" = 2 ]
}

need_db=0
if ! db_ready; then
    need_db=1
elif is_root && ! grants_ok; then
    need_db=1
fi
if [ "$need_db" = 1 ]; then
    root_sql "
        CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
        CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
        ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL PRIVILEGES ON \`clouddisco%\`.* TO '$DB_USER'@'127.0.0.1';
        GRANT ALL PRIVILEGES ON \`clouddisco%\`.* TO '$DB_USER'@'localhost';
        FLUSH PRIVILEGES;" >/dev/null \
        || die "could not create the MariaDB account $DB_USER (needs root over the unix socket)"
    db_ready || die "MariaDB account $DB_USER still cannot log in over 127.0.0.1:3306"
    say "ensured MariaDB user $DB_USER@{127.0.0.1,localhost} and database $DB_NAME"
fi

# --- Python virtualenv ------------------------------------------------------
[ -f "$REPO/requirements.txt" ] || die "$REPO/requirements.txt is missing"
if [ ! -f "$REPO/setup.cfg" ] && [ ! -f "$REPO/pyproject.toml" ] && [ ! -f "$REPO/setup.py" ]; then
    die "$REPO has no setup.cfg, pyproject.toml or setup.py to install"
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    rm -f "$STAMP"
    say "created virtualenv $VENV"
fi

req_files=(requirements.txt)
[ -f "$REPO/test-requirements.txt" ] && req_files+=(test-requirements.txt)
# The editable install depends on the package metadata too (entry points,
# packages list), so a change there must re-run pip as well.
hashed=("${req_files[@]}")
for f in setup.cfg setup.py pyproject.toml; do
    [ -f "$REPO/$f" ] && hashed+=("$f")
done
want="$(cd "$REPO" && sha256sum "${hashed[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    # pbr takes the version from git; a tree without commits (or an export
    # without .git) would make the editable install fail for no good reason.
    if ! git -C "$REPO" rev-parse -q --verify HEAD >/dev/null 2>&1; then
        export PBR_VERSION="${PBR_VERSION:-0.0.1.dev0}"
    fi
    pip_args=()
    for f in "${req_files[@]}"; do pip_args+=(-r "$f"); done
    # pip -q still prints build-backend warnings; keep its output for the
    # failure message only.
    plog="$(mktemp /tmp/clouddisco-pip.XXXXXX)"
    if ! (cd "$REPO" && "$VENV/bin/pip" install -q --disable-pip-version-check "${pip_args[@]}") >"$plog" 2>&1; then
        tail -n 40 "$plog" >&2; rm -f "$plog"
        die "pip install ${req_files[*]} failed"
    fi
    if ! (cd "$REPO" && "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .) >"$plog" 2>&1; then
        tail -n 40 "$plog" >&2; rm -f "$plog"
        die "pip install -e . failed"
    fi
    rm -f "$plog"
    # Written only after both installs succeeded, so a failed run retries.
    echo "$want" >"$STAMP"
    say "installed Python requirements (${req_files[*]}) and clouddisco into $VENV"
fi

[ "$did" = 1 ] || say "everything already in place"
