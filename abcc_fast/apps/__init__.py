"""The applications on top of the layers (docs/architecture.md): the command modules of ``abcc``
(``*_cli.py``, assembled by ``abcc_fast.cli``), ``abcc demo`` (``demo``) and ``abcc bench --all``
(``suite``, ``suite_table``). Nothing below imports them."""
