"""The filter forms of the list pages."""

from django import forms


class FilterForm(forms.Form):
    """A list's filters. A value that does not parse (a hand-edited URL's `since=notadate`)
    is left out and shown as an error beside its field; the other filters still apply,
    instead of the whole list coming back unfiltered."""

    def filter_values(self):
        """Every field's cleaned value, None for one that is empty or did not parse (all of
        them when nothing was asked for)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})  # an unbound form cleans nothing
        return {name: cleaned.get(name) for name in self.fields}
