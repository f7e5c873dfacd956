"""The filter forms of the list pages."""

from django import forms


class FilterForm(forms.Form):
    """A list's filters. A value that does not parse (a hand-edited URL's `since=notadate`),
    or an `until` before the `since`, is left out and shown as an error beside its field;
    the other filters still apply, instead of the whole list coming back unfiltered."""

    def clean(self):
        # A date range that ends before it starts would show an empty list without a word.
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "Pick a date on or after the start date.")
        return data

    def filter_values(self):
        """Every field's cleaned value, None for one that is empty or did not parse (all of
        them when nothing was asked for)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})  # an unbound form cleans nothing
        return {name: cleaned.get(name) for name in self.fields}
