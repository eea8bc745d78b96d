from django.db import models


class IntegerValue(models.Model):
    name = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)
    version = models.PositiveIntegerField(default=0, editable=False)  # +1 on every save

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.version += 1
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "version"}  # type: ignore[misc]
        super().save(*args, **kwargs)  # type: ignore[arg-type]
