from django.conf import settings
from django.core.paginator import Paginator


def paginate(request, queryset, per_page=None):
    """The requested page of a queryset, and the query string to keep filters across pages."""
    paginator = Paginator(queryset, per_page or settings.PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    page.filter_query = params.urlencode()
    return page
