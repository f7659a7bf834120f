"""Build the POST body a browser would send back for a rendered admin change form."""

from django.forms import MultiWidget
from django.template.response import TemplateResponse


def change_form_data(page: TemplateResponse) -> dict:
    """The values of the change form and its inlines' management forms and row ids, as rendered."""
    form = page.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        widget = form.fields[name].widget
        if isinstance(widget, MultiWidget):  # split date and time inputs: name_0, name_1
            for suffix, part in zip(widget.widgets_names, widget.decompress(value), strict=True):
                data[name + suffix] = part
        else:
            data[name] = "on" if value is True else value
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for row in formset.forms:
            for name in ("id", formset.fk.name):
                value = row[name].value()
                if value is not None:
                    data[row.add_prefix(name)] = value
    return data
