from django.contrib import admin

from passengers.models import Passenger


@admin.register(Passenger)
class PassengerAdmin(admin.ModelAdmin):
    list_display = ["name", "passenger_class", "sex", "age", "survived", "fare", "updated_at"]
    list_filter = ["passenger_class", "sex", "survived"]
    search_fields = ["name"]
    readonly_fields = ["uuid", "created_at", "updated_at"]
    ordering = ["name"]
    list_per_page = 50
