"""The improvement loop: canary decisions (``canary``), loop configuration (``config``), the loop's
steps and resumable state (``steps``, ``runner``) and the ``treadle loop`` command (``command``)."""
