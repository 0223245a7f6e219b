"""``vvctl install``, ``vvctl crontab`` and ``vvctl selftest``: turning a machine into a box that runs itself.

:mod:`.entry` finds this installation's ``vvctl`` and its files, :mod:`.crontab` renders and splices the
crontab block, :mod:`.systemd` the service and timer units, :mod:`.manifest` the signed integrity
manifest, :mod:`.install` puts it all in place (and checks or removes it), :mod:`.selftest` is the daily
self-test.
"""
