"""Forms shared by several screens."""

from flask_wtf import FlaskForm


class EmptyForm(FlaskForm):
    """A form with nothing but the CSRF token, for button-only POSTs."""
