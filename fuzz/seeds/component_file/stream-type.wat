(component
  (type (;0;) (stream u8))
)
