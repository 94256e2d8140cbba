"""Text from inside a server, made fit to show.

Its owner is root there: container names, statuses, compose output and log
lines may carry escape sequences and bells. HTML escaping leaves those to the
browser; here every control character but tab and newline is shown as its
visible symbol (␛ for escape, ␇ for the bell, ␀ for NUL, which PostgreSQL
refuses), so nothing from inside moves or rings anything on a page. Applied
where such text comes in: the monitor's snapshots, compose's output, log
lines, the daemons' refusals, sftp's paths.
"""

_VISIBLE = {code: 0x2400 + code for code in range(32) if code not in (9, 10)} | {127: 0x2421}


def visible_controls(text):
    return text.translate(_VISIBLE)
