"""What the clouddisco commands share: column sets and formatters."""

from cliff import columns


class AdminStateColumn(columns.FormattableColumn):
    """``admin_state_up``: UP or DOWN in a table, the boolean in json/yaml."""

    def human_readable(self):
        return "UP" if self._value else "DOWN"

    def machine_readable(self):
        return self._value


class AliveColumn(columns.FormattableColumn):
    """``alive``: alive or DEAD in a table, the boolean in json/yaml."""

    def human_readable(self):
        return "alive" if self._value else "DEAD"

    def machine_readable(self):
        return self._value


def list_output(items, fields, headers, formatters=None):
    """(headers, rows) for a Lister: ``fields`` of each item, in order."""
    formatters = formatters or {}
    rows = [tuple(formatters[f](item.get(f)) if f in formatters else item.get(f)
                  for f in fields) for item in items]
    return tuple(headers), rows


def show_output(item, order, formatters=None):
    """(names, values) for a ShowOne: the fields of ``order`` first, then any
    other the API added, by name."""
    formatters = formatters or {}
    names = [f for f in order if f in item] + sorted(set(item) - set(order))
    return tuple(names), tuple(formatters[n](item[n]) if n in formatters else item[n]
                               for n in names)


def add_paging_options(parser, what):
    parser.add_argument(
        "--limit", metavar="<num>", type=int,
        help=f"Show at most <num> {what} (default: all, page after page)")
    parser.add_argument(
        "--marker", metavar="<id>",
        help=f"Start after the {what[:-1]} with this ID (the last one of a previous page)")
