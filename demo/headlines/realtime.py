import tidings

# Headlines are public: anyone may follow one, over any transport. Only the API's PUT
# publishes (no client may publish on these topics: there is no rule for that).
tidings.allow("headlines.*", subscribe=True)
