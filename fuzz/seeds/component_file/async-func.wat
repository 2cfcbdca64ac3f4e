(component
  (type (;0;) (func async))
)
