"""``treadle report``: read result files, compute recommendations and risks, render Markdown and HTML."""
