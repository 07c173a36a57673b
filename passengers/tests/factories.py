import factory

from passengers.models import Passenger


class PassengerFactory(factory.django.DjangoModelFactory[Passenger]):
    class Meta:
        model = Passenger

    survived = factory.Faker("pybool")
    passenger_class = factory.Iterator([1, 2, 3])
    name = factory.Sequence(lambda n: f"Mr. Test Passenger {n}")
    sex = factory.Iterator(["male", "female", "other"])
    age = factory.Iterator([22, 0.42, 34.5, 80])
    siblings_or_spouses_aboard = 0
    parents_or_children_aboard = 0
    fare = factory.Iterator([7.25, 263.0, 71.2833])
