from django.urls import path

from demo.headlines import views

app_name = "headlines"
urlpatterns = [
    path("", views.base, name="base"),
    path("<int:headline_id>/", views.item, name="item"),
    path("list/", views.index, name="index"),
    path("<int:headline_id>/show/", views.page, name="show"),
    path("<int:headline_id>/edit/", views.edit, name="edit"),
]
